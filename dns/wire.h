// DNS wire format (RFC 1035, EDNS0 from RFC 6891): parsing queries defensively
// and writing responses with name compression. No allocation per message once
// the reusable buffers have grown.
#pragma once

#include "api/error.h"

#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::dns {

enum RecordType : std::uint16_t {
  kTypeA = 1, kTypeNS = 2, kTypeCNAME = 5, kTypeSOA = 6, kTypePTR = 12, kTypeTXT = 16,
  kTypeAAAA = 28, kTypeSRV = 33, kTypeOPT = 41, kTypeANY = 255,
};
enum Rcode : std::uint8_t {
  kNoError = 0, kFormErr = 1, kServFail = 2, kNxDomain = 3, kNotImp = 4, kRefused = 5,
};
constexpr std::uint16_t kClassIN = 1;
constexpr size_t kMaxUdpPayload = 4096;  // what we advertise and honour at most

struct Query {
  std::uint16_t id = 0;
  std::uint16_t flags = 0;      // header flags as received (RD is echoed)
  std::string name;             // lower case, no trailing dot; "" is the root
  // The question's name as it came on the wire (the client's case kept: the
  // answer echoes it, as RFC 1035 asks and 0x20-randomizing resolvers check).
  // Set by parseQuery; 0 length: write `name` instead. Whoever changes `name`
  // clears it (a fixed array: parsing allocates nothing).
  std::array<std::uint8_t, 255> wireName{};
  std::uint16_t wireNameLength = 0;
  std::uint16_t qtype = 0;
  std::uint16_t qclass = 0;
  bool edns = false;
  std::uint16_t udpPayload = 512;  // the client's limit (512 without EDNS)
  bool dnssecOk = false;
};

// Parses a query into `out` (reusing its string capacity). Errors: EINVAL for
// malformed input (answer FORMERR when at least the 12-byte header was read:
// `headerRead` tells), ENOTSUP for opcodes other than QUERY (answer NOTIMP).
Status parseQuery(const std::uint8_t* data, size_t length, Query& out, bool& headerRead);

// Reads a possibly compressed name at `offset` (advanced past it) into `out`,
// lower-cased without the trailing dot. Rejects pointer loops, forward
// pointers, labels over 63 bytes and names over 255 bytes.
Status readName(const std::uint8_t* message, size_t length, size_t& offset, std::string& out);

// Builds one response. Reuse an instance per thread: reset() keeps capacity.
class ResponseWriter {
 public:
  ResponseWriter();
  void reset(const Query& query, std::uint8_t rcode, bool authoritative);
  void addA(std::string_view name, std::uint32_t ttl, std::uint32_t addressHostOrder);
  void addCname(std::string_view name, std::uint32_t ttl, std::string_view target);
  void addPtr(std::string_view name, std::uint32_t ttl, std::string_view target);
  void addNs(std::string_view name, std::uint32_t ttl, std::string_view target);
  // NS whose target is `targetHead` + "." + `targetTail` (built without a string).
  void addNs(std::string_view name, std::uint32_t ttl, std::string_view targetHead, std::string_view targetTail);
  void addTxt(std::string_view name, std::uint32_t ttl, std::string_view text);
  void addSrv(std::string_view name, std::uint32_t ttl, std::uint16_t priority, std::uint16_t weight,
              std::uint16_t port, std::string_view target);
  // SOA in the authority section (negative answers) or answer section.
  void addSoa(std::string_view zone, std::uint32_t ttl, std::uint32_t minimum, bool inAuthority);
  // A record whose rdata holds no names (A, AAAA, TXT, ...), copied as is.
  void addRaw(std::string_view name, std::uint16_t type, std::uint32_t ttl, const std::uint8_t* rdata, size_t length);
  void setRcode(std::uint8_t rcode);
  // Finishes the message for a transport limit: past `limit` bytes the answer is
  // cut to the question and TC is set. Returns the bytes to send (valid until
  // the next reset()).
  std::span<const std::uint8_t> finish(size_t limit);

 private:
  enum class Section { Answer, Authority };
  void beginRecord(std::string_view name, std::uint16_t type, std::uint32_t ttl, Section section);
  void endRecord();
  // A record whose rdata is one (compressible) name: CNAME, PTR, NS.
  void addNameRecord(std::uint16_t type, std::string_view name, std::uint32_t ttl, std::string_view targetHead,
                     std::string_view targetTail = {});
  void writeName(std::string_view name) { writeName(name, {}); }
  // Writes the name `head` + "." + `tail` (either may be empty).
  void writeName(std::string_view head, std::string_view tail);
  // The message is written at size_ into buf_, which only grows (past 4 KB for
  // large TCP answers): plain stores instead of a vector's push_back per byte.
  std::uint8_t* room(size_t n) {
    if (size_ + n > buf_.size()) grow(size_ + n);
    std::uint8_t* at = buf_.data() + size_;
    size_ += n;
    return at;
  }
  void grow(size_t needed);
  void put8(std::uint8_t v) { *room(1) = v; }
  void put16(std::uint16_t v) {
    std::uint8_t* p = room(2);
    p[0] = static_cast<std::uint8_t>(v >> 8);
    p[1] = static_cast<std::uint8_t>(v);
  }
  void put32(std::uint32_t v) {
    put16(static_cast<std::uint16_t>(v >> 16));
    put16(static_cast<std::uint16_t>(v));
  }
  void putBytes(const void* data, size_t n) {
    if (n > 0) std::memcpy(room(n), data, n);
  }
  void putLabel(std::string_view label) {
    std::uint8_t* p = room(1 + label.size());
    p[0] = static_cast<std::uint8_t>(label.size());
    std::memcpy(p + 1, label.data(), label.size());
  }

  std::vector<std::uint8_t> buf_;
  size_t size_ = 0;
  size_t questionEnd_ = 0;
  size_t rdlengthAt_ = 0;
  std::uint16_t answers_ = 0, authority_ = 0;
  bool edns_ = false;
  // Compression: where each label written uncompressed starts in buf_, the
  // length of the dotted name from there on, and where that text is in
  // names_ (each name written is copied there once, whole; its suffixes are
  // views of that copy). A candidate suffix is compared only when its length
  // matches.
  struct Written {
    std::uint16_t offset;
    std::uint16_t length;
    std::uint16_t text;
  };
  // Copies `head` + "." + `tail` into names_; false when it is full.
  bool keepText(std::string_view head, std::string_view tail, size_t& at);
  std::array<char, 2048> names_;
  size_t namesUsed_ = 0;
  std::array<Written, 64> written_;
  size_t writtenCount_ = 0;
};

// Appends the answer section of an upstream `response` to `out` (names
// decompressed; A, AAAA, CNAME and TXT records, the rest skipped) and returns
// its rcode, or an error when the message is malformed.
Result<std::uint8_t> copyAnswers(const std::uint8_t* response, size_t length, ResponseWriter& out);

// A plain query message (RD set, EDNS0 when asked) for forwarding a name we made.
std::vector<std::uint8_t> buildQuery(std::uint16_t id, std::string_view name, std::uint16_t qtype, bool edns);

// Cuts `response` to a header + question with TC set when it exceeds `limit`.
void truncateForUdp(std::vector<std::uint8_t>& response, size_t limit);

// Walks a response's records, calling `visit(ttlOffset)` for every TTL field
// (answer, authority, additional; not OPT). False when malformed.
bool forEachTtl(const std::uint8_t* message, size_t length, const std::function<void(size_t)>& visit);

}  // namespace ferry::dns
