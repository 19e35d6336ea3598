#include "dns/wire.h"

#include <cstring>
#include <ctime>

namespace ferry::dns {
namespace {

std::uint16_t get16(const std::uint8_t* p) { return static_cast<std::uint16_t>((p[0] << 8) | p[1]); }

// 'A'..'Z' to 'a'..'z' in place, other bytes (0x80 and up too) as they are;
// eight bytes a step. `text` has room for 8 bytes past `n` (they may be read
// and written, never kept).
void lowerAscii(char* text, size_t n) {
  constexpr std::uint64_t kOnes = 0x0101010101010101ull;
  for (size_t i = 0; i < n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, text + i, 8);
    std::uint64_t low7 = w & (0x7F * kOnes);
    // Per byte (its low 7 bits, no carry between bytes): the top bit of
    // low7 + (0x80 - 'A') is set from 'A' on, of low7 + (0x80 - 'Z' - 1) past 'Z'.
    std::uint64_t upper = ((low7 + (0x80 - 'A') * kOnes) ^ (low7 + (0x80 - 'Z' - 1) * kOnes)) & ~w & (0x80 * kOnes);
    w |= upper >> 2;  // 0x80 >> 2 is 0x20, the case bit
    std::memcpy(text + i, &w, 8);
  }
}

}  // namespace

Status readName(const std::uint8_t* message, size_t length, size_t& offset, std::string& out) {
  // Built in a local buffer and assigned once (255 bytes of wire name make at
  // most 254 characters). Labels are copied whole and lower-cased at the end,
  // eight bytes at a time: byte by byte this was a quarter of a cluster query.
  char text[256 + 8];
  size_t used = 0;
  size_t pos = offset;
  bool jumped = false;
  int jumps = 0;
  size_t wireLength = 0;
  while (true) {
    if (pos >= length) return fail(EINVAL, "name runs past the message");
    std::uint8_t len = message[pos];
    if ((len & 0xC0) == 0xC0) {
      if (pos + 1 >= length) return fail(EINVAL, "truncated compression pointer");
      size_t target = static_cast<size_t>(((len & 0x3F) << 8) | message[pos + 1]);
      // Pointers must go backwards; that alone rules out loops, the count is a second guard.
      if (target >= pos || ++jumps > 64) return fail(EINVAL, "bad compression pointer");
      if (!jumped) offset = pos + 2;
      jumped = true;
      pos = target;
      continue;
    }
    if ((len & 0xC0) != 0) return fail(EINVAL, "unsupported label type");
    if (len == 0) {
      if (!jumped) offset = pos + 1;
      lowerAscii(text, used);
      out.assign(text, used);
      return {};
    }
    if (len > 63) return fail(EINVAL, "label longer than 63 bytes");
    if (pos + 1 + len > length) return fail(EINVAL, "label runs past the message");
    wireLength += len + 1;
    if (wireLength > 255) return fail(EINVAL, "name longer than 255 bytes");
    if (used > 0) text[used++] = '.';
    std::memcpy(text + used, message + pos + 1, len);
    used += len;
    pos += 1 + len;
  }
}

Status parseQuery(const std::uint8_t* data, size_t length, Query& out, bool& headerRead) {
  headerRead = false;
  if (length < 12) return fail(EINVAL, "shorter than a DNS header");
  headerRead = true;
  out.id = get16(data);
  out.flags = get16(data + 2);
  out.edns = false;
  out.udpPayload = 512;
  out.dnssecOk = false;
  if (out.flags & 0x8000) return fail(EINVAL, "not a query (QR set)");
  if (((out.flags >> 11) & 0xF) != 0) return fail(ENOTSUP, "opcode not supported");
  std::uint16_t qd = get16(data + 4), an = get16(data + 6), ns = get16(data + 8), ar = get16(data + 10);
  if (qd != 1) return fail(EINVAL, "a query must have exactly one question");
  if (an != 0 || ns != 0) return fail(EINVAL, "a query carries no answers");
  size_t offset = 12;
  out.wireNameLength = 0;
  if (auto st = readName(data, length, offset, out.name); !st) return st;
  if (offset + 4 > length) return fail(EINVAL, "truncated question");
  // Without compression (what every client sends) the wire form is the name's
  // labels as they came: kept for the answer's question and owner names.
  size_t wireLength = offset - 12;
  if (wireLength == (out.name.empty() ? 1 : out.name.size() + 2) && wireLength <= out.wireName.size()) {
    std::memcpy(out.wireName.data(), data + 12, wireLength);
    out.wireNameLength = static_cast<std::uint16_t>(wireLength);
  }
  out.qtype = get16(data + offset);
  out.qclass = get16(data + offset + 2);
  offset += 4;
  // Additional section: only OPT matters (EDNS0). The names there are read
  // into a buffer that keeps its capacity (a query allocates nothing).
  thread_local std::string scratch;
  for (std::uint16_t i = 0; i < ar; ++i) {
    if (auto st = readName(data, length, offset, scratch); !st) return st;
    if (offset + 10 > length) return fail(EINVAL, "truncated additional record");
    std::uint16_t type = get16(data + offset);
    std::uint16_t klass = get16(data + offset + 2);
    std::uint32_t ttl = (static_cast<std::uint32_t>(get16(data + offset + 4)) << 16) | get16(data + offset + 6);
    std::uint16_t rdlen = get16(data + offset + 8);
    offset += 10;
    if (offset + rdlen > length) return fail(EINVAL, "additional record runs past the message");
    if (type == kTypeOPT) {
      if (out.edns) return fail(EINVAL, "more than one OPT record");
      out.edns = true;
      out.udpPayload = std::max<std::uint16_t>(512, std::min<std::uint16_t>(klass, kMaxUdpPayload));
      out.dnssecOk = (ttl & 0x8000) != 0;
    }
    offset += rdlen;
  }
  if (offset != length) return fail(EINVAL, "trailing bytes after the records");
  return {};
}

ResponseWriter::ResponseWriter() {
  // Room for a UDP answer: a warm writer allocates only for TCP answers past 4 KB.
  buf_.resize(kMaxUdpPayload + 512);
}

void ResponseWriter::grow(size_t needed) { buf_.resize(std::max(needed, buf_.size() * 2)); }

namespace {

// Is `text` the name `head` + "." + `tail` (tail possibly empty)? The lengths
// are known to match.
bool isJoined(std::string_view text, std::string_view head, std::string_view tail) {
  if (tail.empty()) return std::memcmp(text.data(), head.data(), head.size()) == 0;
  return std::memcmp(text.data(), head.data(), head.size()) == 0 && text[head.size()] == '.' &&
         std::memcmp(text.data() + head.size() + 1, tail.data(), tail.size()) == 0;
}

}  // namespace

bool ResponseWriter::keepText(std::string_view head, std::string_view tail, size_t& at) {
  size_t length = tail.empty() ? head.size() : head.size() + 1 + tail.size();
  if (namesUsed_ + length > names_.size()) return false;
  at = namesUsed_;
  std::memcpy(names_.data() + at, head.data(), head.size());
  if (!tail.empty()) {
    names_[at + head.size()] = '.';
    std::memcpy(names_.data() + at + head.size() + 1, tail.data(), tail.size());
  }
  namesUsed_ += length;
  return true;
}

void ResponseWriter::writeName(std::string_view head, std::string_view tail) {
  if (head.empty()) std::swap(head, tail);
  size_t total = tail.empty() ? head.size() : head.size() + 1 + tail.size();
  size_t text = 0;
  bool kept = false;
  // Longest already-written suffix (label-aligned) becomes a pointer.
  while (!head.empty()) {
    size_t length = tail.empty() ? head.size() : head.size() + 1 + tail.size();
    for (size_t i = 0; i < writtenCount_; ++i) {
      const Written& w = written_[i];
      if (w.length == length && isJoined(std::string_view(names_.data() + w.text, length), head, tail)) {
        put16(static_cast<std::uint16_t>(0xC000 | w.offset));
        return;
      }
    }
    // This label is written out: remember it (pointers hold 14 bits of offset).
    if (!kept) kept = keepText(head, tail, text);
    if (kept && writtenCount_ < written_.size() && size_ < 0x3FFF)
      written_[writtenCount_++] = {static_cast<std::uint16_t>(size_), static_cast<std::uint16_t>(length),
                                   static_cast<std::uint16_t>(text + total - length)};
    size_t dot = head.find('.');
    putLabel(head.substr(0, dot));
    head = dot == std::string_view::npos ? std::string_view() : head.substr(dot + 1);
    if (head.empty()) std::swap(head, tail);
  }
  put8(0);
}

void ResponseWriter::reset(const Query& query, std::uint8_t rcode, bool authoritative) {
  size_ = 0;
  writtenCount_ = 0;
  namesUsed_ = 0;
  answers_ = authority_ = 0;
  edns_ = query.edns;
  put16(query.id);
  std::uint16_t flags = 0x8000 | (query.flags & 0x0100);  // QR, echo RD
  if (authoritative) flags |= 0x0400;
  flags |= 0x0080;  // RA: we recurse through the upstreams
  flags |= rcode & 0xF;
  put16(flags);
  put16(1);
  put16(0);
  put16(0);
  put16(0);
  size_t text = 0;
  if (query.wireNameLength > 0 && keepText(query.name, {}, text)) {
    // The question as asked; each label's suffix is a view of the name's text.
    size_t at = size_;
    putBytes(query.wireName.data(), query.wireNameLength);
    size_t length = query.name.size();
    while (buf_[at] != 0 && writtenCount_ < written_.size()) {
      written_[writtenCount_++] = {static_cast<std::uint16_t>(at), static_cast<std::uint16_t>(length),
                                   static_cast<std::uint16_t>(text + query.name.size() - length)};
      size_t label = buf_[at];
      length = length > label ? length - label - 1 : 0;
      at += 1 + label;
    }
  } else {
    writeName(query.name);
  }
  put16(query.qtype);
  put16(query.qclass);
  questionEnd_ = size_;
}

void ResponseWriter::addRaw(std::string_view name, std::uint16_t type, std::uint32_t ttl, const std::uint8_t* rdata,
                            size_t length) {
  beginRecord(name, type, ttl, Section::Answer);
  putBytes(rdata, length);
  endRecord();
}

void ResponseWriter::setRcode(std::uint8_t rcode) { buf_[3] = static_cast<std::uint8_t>((buf_[3] & 0xF0) | (rcode & 0xF)); }

void ResponseWriter::beginRecord(std::string_view name, std::uint16_t type, std::uint32_t ttl, Section section) {
  writeName(name);
  std::uint8_t* p = room(10);
  p[0] = static_cast<std::uint8_t>(type >> 8);
  p[1] = static_cast<std::uint8_t>(type);
  p[2] = 0;
  p[3] = kClassIN;
  p[4] = static_cast<std::uint8_t>(ttl >> 24);
  p[5] = static_cast<std::uint8_t>(ttl >> 16);
  p[6] = static_cast<std::uint8_t>(ttl >> 8);
  p[7] = static_cast<std::uint8_t>(ttl);
  p[8] = p[9] = 0;  // rdlength, set by endRecord()
  rdlengthAt_ = size_ - 2;
  if (section == Section::Answer) ++answers_;
  else ++authority_;
}

void ResponseWriter::endRecord() {
  size_t len = size_ - rdlengthAt_ - 2;
  buf_[rdlengthAt_] = static_cast<std::uint8_t>(len >> 8);
  buf_[rdlengthAt_ + 1] = static_cast<std::uint8_t>(len);
}

void ResponseWriter::addA(std::string_view name, std::uint32_t ttl, std::uint32_t address) {
  beginRecord(name, kTypeA, ttl, Section::Answer);
  put32(address);
  endRecord();
}

void ResponseWriter::addNameRecord(std::uint16_t type, std::string_view name, std::uint32_t ttl,
                                   std::string_view targetHead, std::string_view targetTail) {
  beginRecord(name, type, ttl, Section::Answer);
  writeName(targetHead, targetTail);
  endRecord();
}

void ResponseWriter::addCname(std::string_view name, std::uint32_t ttl, std::string_view target) {
  addNameRecord(kTypeCNAME, name, ttl, target);
}

void ResponseWriter::addPtr(std::string_view name, std::uint32_t ttl, std::string_view target) {
  addNameRecord(kTypePTR, name, ttl, target);
}

void ResponseWriter::addNs(std::string_view name, std::uint32_t ttl, std::string_view target) {
  addNameRecord(kTypeNS, name, ttl, target);
}

void ResponseWriter::addNs(std::string_view name, std::uint32_t ttl, std::string_view targetHead,
                           std::string_view targetTail) {
  addNameRecord(kTypeNS, name, ttl, targetHead, targetTail);
}

void ResponseWriter::addTxt(std::string_view name, std::uint32_t ttl, std::string_view text) {
  beginRecord(name, kTypeTXT, ttl, Section::Answer);
  std::string_view rest = text;
  do {
    std::string_view chunk = rest.substr(0, 255);
    putLabel(chunk);  // a character-string: a length byte and the bytes, like a label
    rest.remove_prefix(chunk.size());
  } while (!rest.empty());
  endRecord();
}

void ResponseWriter::addSrv(std::string_view name, std::uint32_t ttl, std::uint16_t priority, std::uint16_t weight,
                            std::uint16_t port, std::string_view target) {
  beginRecord(name, kTypeSRV, ttl, Section::Answer);
  put16(priority);
  put16(weight);
  put16(port);
  // RFC 2782: the target is not compressed.
  std::string_view rest = target;
  while (!rest.empty()) {
    size_t dot = rest.find('.');
    putLabel(rest.substr(0, dot));
    rest = dot == std::string_view::npos ? std::string_view() : rest.substr(dot + 1);
  }
  put8(0);
  endRecord();
}

void ResponseWriter::addSoa(std::string_view zone, std::uint32_t ttl, std::uint32_t minimum, bool inAuthority) {
  beginRecord(zone, kTypeSOA, ttl, inAuthority ? Section::Authority : Section::Answer);
  writeName("ns.dns", zone);
  writeName("hostmaster", zone);
  // The serial moves with time so secondaries (and caches) notice changes.
  put32(static_cast<std::uint32_t>(time(nullptr)));
  put32(7200);
  put32(1800);
  put32(86400);
  put32(minimum);
  endRecord();
}

std::span<const std::uint8_t> ResponseWriter::finish(size_t limit) {
  size_t arcount = 0;
  if (edns_) {
    // OPT: root name, type 41, our payload size, no extended flags.
    size_t needed = 11;
    if (size_ + needed <= limit) {
      put8(0);
      put16(kTypeOPT);
      put16(kMaxUdpPayload);
      put32(0);
      put16(0);
      arcount = 1;
    }
  }
  buf_[6] = static_cast<std::uint8_t>(answers_ >> 8);
  buf_[7] = static_cast<std::uint8_t>(answers_);
  buf_[8] = static_cast<std::uint8_t>(authority_ >> 8);
  buf_[9] = static_cast<std::uint8_t>(authority_);
  buf_[10] = 0;
  buf_[11] = static_cast<std::uint8_t>(arcount);
  if (size_ > limit) {
    // Keep the header and the question (TC set); the client retries over TCP.
    size_ = questionEnd_;
    buf_[2] |= 0x02;
    std::memset(buf_.data() + 6, 0, 6);
  }
  return {buf_.data(), size_};
}

Result<std::uint8_t> copyAnswers(const std::uint8_t* m, size_t length, ResponseWriter& out) {
  if (length < 12) return fail(EINVAL, "short response");
  std::uint16_t qd = get16(m + 4), an = get16(m + 6);
  size_t offset = 12;
  std::string name, target;
  for (std::uint16_t i = 0; i < qd; ++i) {
    if (auto st = readName(m, length, offset, name); !st) return fail(st.error());
    offset += 4;
  }
  for (std::uint16_t i = 0; i < an; ++i) {
    if (auto st = readName(m, length, offset, name); !st) return fail(st.error());
    if (offset + 10 > length) return fail(EINVAL, "truncated record");
    std::uint16_t type = get16(m + offset);
    std::uint32_t ttl = (static_cast<std::uint32_t>(get16(m + offset + 4)) << 16) | get16(m + offset + 6);
    std::uint16_t rdlen = get16(m + offset + 8);
    offset += 10;
    if (offset + rdlen > length) return fail(EINVAL, "record runs past the message");
    if (type == kTypeCNAME) {
      size_t at = offset;
      if (auto st = readName(m, length, at, target); !st) return fail(st.error());
      out.addCname(name, ttl, target);
    } else if (type == kTypeA || type == kTypeAAAA || type == kTypeTXT) {
      out.addRaw(name, type, ttl, m + offset, rdlen);
    }
    offset += rdlen;
  }
  return static_cast<std::uint8_t>(m[3] & 0xF);
}

std::vector<std::uint8_t> buildQuery(std::uint16_t id, std::string_view name, std::uint16_t qtype, bool edns) {
  std::vector<std::uint8_t> q = {static_cast<std::uint8_t>(id >> 8), static_cast<std::uint8_t>(id), 0x01, 0x00, 0, 1, 0, 0,
                                 0, 0, 0, static_cast<std::uint8_t>(edns ? 1 : 0)};
  std::string_view rest = name;
  while (!rest.empty()) {
    size_t dot = rest.find('.');
    std::string_view label = rest.substr(0, dot);
    q.push_back(static_cast<std::uint8_t>(label.size()));
    q.insert(q.end(), label.begin(), label.end());
    rest = dot == std::string_view::npos ? std::string_view() : rest.substr(dot + 1);
  }
  q.push_back(0);
  q.push_back(static_cast<std::uint8_t>(qtype >> 8));
  q.push_back(static_cast<std::uint8_t>(qtype));
  q.push_back(0);
  q.push_back(kClassIN);
  if (edns) {
    const std::uint8_t opt[] = {0, 0, kTypeOPT, static_cast<std::uint8_t>(kMaxUdpPayload >> 8),
                                static_cast<std::uint8_t>(kMaxUdpPayload & 0xFF), 0, 0, 0, 0, 0, 0};
    q.insert(q.end(), opt, opt + sizeof opt);
  }
  return q;
}

void truncateForUdp(std::vector<std::uint8_t>& response, size_t limit) {
  if (response.size() <= limit || response.size() < 12) return;
  // Keep the header and the question; the client retries over TCP.
  size_t offset = 12;
  std::string scratch;
  if (!readName(response.data(), response.size(), offset, scratch) || offset + 4 > response.size()) {
    response.resize(12);
    std::memset(response.data() + 4, 0, 8);
  } else {
    response.resize(offset + 4);
    response[4] = 0;
    response[5] = 1;
    std::memset(response.data() + 6, 0, 6);
  }
  response[2] |= 0x02;  // TC
}

bool forEachTtl(const std::uint8_t* message, size_t length, const std::function<void(size_t)>& visit) {
  if (length < 12) return false;
  std::uint16_t qd = get16(message + 4);
  size_t records = static_cast<size_t>(get16(message + 6)) + get16(message + 8) + get16(message + 10);
  size_t offset = 12;
  std::string scratch;
  for (std::uint16_t i = 0; i < qd; ++i) {
    if (!readName(message, length, offset, scratch) || offset + 4 > length) return false;
    offset += 4;
  }
  for (size_t i = 0; i < records; ++i) {
    if (!readName(message, length, offset, scratch) || offset + 10 > length) return false;
    std::uint16_t type = get16(message + offset);
    std::uint16_t rdlen = get16(message + offset + 8);
    if (type != kTypeOPT) visit(offset + 4);
    offset += 10 + rdlen;
    if (offset > length) return false;
  }
  return true;
}

}  // namespace ferry::dns
