#include "dns/wire.h"

#include <cstring>
#include <ctime>

namespace ferry::dns {
namespace {

std::uint16_t get16(const std::uint8_t* p) { return static_cast<std::uint16_t>((p[0] << 8) | p[1]); }

}  // namespace

Status readName(const std::uint8_t* message, size_t length, size_t& offset, std::string& out) {
  out.clear();
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
      return {};
    }
    if (len > 63) return fail(EINVAL, "label longer than 63 bytes");
    if (pos + 1 + len > length) return fail(EINVAL, "label runs past the message");
    wireLength += len + 1;
    if (wireLength > 255) return fail(EINVAL, "name longer than 255 bytes");
    if (!out.empty()) out.push_back('.');
    for (size_t i = 0; i < len; ++i) {
      char c = static_cast<char>(message[pos + 1 + i]);
      out.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c);
    }
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
  if (auto st = readName(data, length, offset, out.name); !st) return st;
  if (offset + 4 > length) return fail(EINVAL, "truncated question");
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

void ResponseWriter::put16(std::uint16_t v) {
  buf_.push_back(static_cast<std::uint8_t>(v >> 8));
  buf_.push_back(static_cast<std::uint8_t>(v));
}

void ResponseWriter::put32(std::uint32_t v) {
  put16(static_cast<std::uint16_t>(v >> 16));
  put16(static_cast<std::uint16_t>(v));
}

namespace {

// Is `text` the name `head` + "." + `tail` (tail possibly empty)?
bool isJoined(std::string_view text, std::string_view head, std::string_view tail) {
  if (tail.empty()) return text == head;
  return text.size() == head.size() + 1 + tail.size() && text.substr(0, head.size()) == head &&
         text[head.size()] == '.' && text.substr(head.size() + 1) == tail;
}

}  // namespace

ResponseWriter::ResponseWriter() {
  // Room for the largest name in every compression slot, and for a UDP answer:
  // a warm writer allocates only for TCP answers past 4 KB.
  for (auto& n : names_) n.reserve(255);
  buf_.reserve(kMaxUdpPayload + 512);
}

void ResponseWriter::writeName(std::string_view head, std::string_view tail) {
  if (head.empty()) std::swap(head, tail);
  // Longest already-written suffix (label-aligned) becomes a pointer.
  while (!head.empty()) {
    for (size_t i = 0; i < writtenCount_; ++i) {
      if (isJoined(written_[i].text, head, tail)) {
        put16(static_cast<std::uint16_t>(0xC000 | written_[i].offset));
        return;
      }
    }
    if (writtenCount_ < written_.size() && buf_.size() < 0x3FFF) {
      std::string& stored = names_[writtenCount_];
      stored.assign(head);
      if (!tail.empty()) stored.append(".").append(tail);
      written_[writtenCount_] = {stored, static_cast<std::uint16_t>(buf_.size())};
      ++writtenCount_;
    }
    size_t dot = head.find('.');
    std::string_view label = head.substr(0, dot);
    buf_.push_back(static_cast<std::uint8_t>(label.size()));
    buf_.insert(buf_.end(), label.begin(), label.end());
    head = dot == std::string_view::npos ? std::string_view() : head.substr(dot + 1);
    if (head.empty()) std::swap(head, tail);
  }
  buf_.push_back(0);
}

void ResponseWriter::reset(const Query& query, std::uint8_t rcode, bool authoritative) {
  buf_.clear();
  writtenCount_ = 0;
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
  writeName(query.name);
  put16(query.qtype);
  put16(query.qclass);
  questionEnd_ = buf_.size();
}

void ResponseWriter::addRaw(std::string_view name, std::uint16_t type, std::uint32_t ttl, const std::uint8_t* rdata,
                            size_t length) {
  beginRecord(name, type, ttl, Section::Answer);
  buf_.insert(buf_.end(), rdata, rdata + length);
  endRecord();
}

void ResponseWriter::setRcode(std::uint8_t rcode) { buf_[3] = static_cast<std::uint8_t>((buf_[3] & 0xF0) | (rcode & 0xF)); }

void ResponseWriter::beginRecord(std::string_view name, std::uint16_t type, std::uint32_t ttl, Section section) {
  writeName(name);
  put16(type);
  put16(kClassIN);
  put32(ttl);
  rdlengthAt_ = buf_.size();
  put16(0);
  if (section == Section::Answer) ++answers_;
  else ++authority_;
}

void ResponseWriter::endRecord() {
  size_t len = buf_.size() - rdlengthAt_ - 2;
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
    buf_.push_back(static_cast<std::uint8_t>(chunk.size()));
    buf_.insert(buf_.end(), chunk.begin(), chunk.end());
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
    std::string_view label = rest.substr(0, dot);
    buf_.push_back(static_cast<std::uint8_t>(label.size()));
    buf_.insert(buf_.end(), label.begin(), label.end());
    rest = dot == std::string_view::npos ? std::string_view() : rest.substr(dot + 1);
  }
  buf_.push_back(0);
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

const std::vector<std::uint8_t>& ResponseWriter::finish(size_t limit) {
  size_t arcount = 0;
  if (edns_) {
    // OPT: root name, type 41, our payload size, no extended flags.
    size_t needed = 11;
    if (buf_.size() + needed <= limit) {
      buf_.push_back(0);
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
  if (buf_.size() > limit) truncateForUdp(buf_, limit);
  return buf_;
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
