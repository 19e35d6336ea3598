#include "dns/cluster_dns.h"

#include "api/log.h"

#include <ares.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <iterator>
#include <span>
#include <mutex>
#include <sstream>
#include <thread>
#include <unordered_map>

namespace ferry::dns {
namespace {

using Clock = std::chrono::steady_clock;
using Bytes = std::vector<std::uint8_t>;
using Reply = std::function<void(const Bytes&)>;

Result<sockaddr_in> parseEndpoint(const std::string& text, int defaultPort) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  std::string host = text;
  int port = defaultPort;
  if (auto colon = text.rfind(':'); colon != std::string::npos) {
    host = text.substr(0, colon);
    try {
      port = std::stoi(text.substr(colon + 1));
    } catch (const std::exception&) {
      return fail(EINVAL, "\"" + text + "\": bad port");
    }
  }
  if (inet_pton(AF_INET, host.c_str(), &sa.sin_addr) != 1) return fail(EINVAL, "\"" + text + "\": not an IPv4 address");
  if (port <= 0 || port > 65535) return fail(EINVAL, "\"" + text + "\": port out of range");
  sa.sin_port = htons(static_cast<std::uint16_t>(port));
  return sa;
}

Result<int> bindSocket(const sockaddr_in& sa, int type) {
  int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
  if (fd < 0) return failErrno("socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  // The node-local address may appear a moment after we start (bridge set-up).
  int freebind = 1;
  setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &freebind, sizeof freebind);
  if (type == SOCK_DGRAM) {
    // Room for a burst while the thread is off the CPU (the default ~200 KB holds
    // ~2 ms at 100k queries/s); the kernel caps it at net.core.rmem_max. Queued
    // packets are kernel memory, used only while they wait.
    int bytes = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
  }
  if (bind(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) {
    int err = errno;
    close(fd);
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sa.sin_addr, buf, sizeof buf);
    return failErrno(std::string("bind ") + buf + ":" + std::to_string(ntohs(sa.sin_port)), err);
  }
  if (type == SOCK_STREAM && listen(fd, 128) != 0) {
    int err = errno;
    close(fd);
    return failErrno("listen", err);
  }
  return fd;
}

std::vector<std::string> resolvConfServers(const std::string& path) {
  std::vector<std::string> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    std::istringstream f(line);
    std::string key, value;
    if (f >> key >> value && key == "nameserver") out.push_back(value + ":53");
  }
  return out;
}

// Header-only error answer (FORMERR / NOTIMP / SERVFAIL) for a message we could not use.
Bytes errorResponse(const std::uint8_t* query, size_t length, std::uint8_t rcode, bool keepQuestion) {
  Bytes out(query, query + std::min<size_t>(length, 12));
  out.resize(12, 0);
  out[2] = static_cast<std::uint8_t>(0x80 | (out[2] & 0x01));  // QR, keep RD
  out[3] = static_cast<std::uint8_t>(0x80 | rcode);
  if (keepQuestion) {
    size_t offset = 12;
    std::string scratch;
    if (readName(query, length, offset, scratch) && offset + 4 <= length) {
      out.insert(out.end(), query + 12, query + offset + 4);
      out[4] = 0;
      out[5] = 1;
    } else {
      out[4] = out[5] = 0;
    }
  } else {
    out[4] = out[5] = 0;
  }
  out[6] = out[7] = out[8] = out[9] = out[10] = out[11] = 0;
  return out;
}

// Forwarded answers, keyed by question; TTLs count down from the time of storing.
class AnswerCache {
 public:
  explicit AnswerCache(size_t capacity) : capacity_(capacity) {}

  static std::string keyOf(const Query& q) {
    std::string k = q.name;
    k.push_back('\0');
    k.append(reinterpret_cast<const char*>(&q.qtype), 2);
    k.append(reinterpret_cast<const char*>(&q.qclass), 2);
    k.push_back(q.dnssecOk ? '1' : '0');
    return k;
  }

  bool lookup(const std::string& key, std::uint16_t id, Bytes& out) {
    std::lock_guard lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return false;
    auto age = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - it->second.stored).count();
    if (age >= it->second.ttl) {
      entries_.erase(it);
      return false;
    }
    out = it->second.response;
    out[0] = static_cast<std::uint8_t>(id >> 8);
    out[1] = static_cast<std::uint8_t>(id);
    std::uint32_t elapsed = static_cast<std::uint32_t>(age);
    forEachTtl(out.data(), out.size(), [&](size_t at) {
      std::uint32_t ttl = (static_cast<std::uint32_t>(out[at]) << 24) | (out[at + 1] << 16) | (out[at + 2] << 8) | out[at + 3];
      ttl = ttl > elapsed ? ttl - elapsed : 0;
      out[at] = static_cast<std::uint8_t>(ttl >> 24);
      out[at + 1] = static_cast<std::uint8_t>(ttl >> 16);
      out[at + 2] = static_cast<std::uint8_t>(ttl >> 8);
      out[at + 3] = static_cast<std::uint8_t>(ttl);
    });
    return true;
  }

  void store(const std::string& key, const Bytes& response) {
    if (response.size() < 12) return;
    std::uint8_t rcode = response[3] & 0xF;
    if (rcode != kNoError && rcode != kNxDomain) return;  // failures are not cached
    if (response[2] & 0x02) return;                       // nor truncated answers
    // Positive answers live for their smallest TTL; negative ones (RFC 2308) for
    // the SOA's TTL in the authority section, which servers set to min(TTL, MINIMUM).
    std::int64_t ttl = -1;
    bool ok = forEachTtl(response.data(), response.size(), [&](size_t at) {
      std::int64_t t = (static_cast<std::uint32_t>(response[at]) << 24) | (response[at + 1] << 16) |
                       (response[at + 2] << 8) | response[at + 3];
      ttl = ttl < 0 ? t : std::min(ttl, t);
    });
    if (!ok || ttl <= 0) return;
    ttl = std::min<std::int64_t>(ttl, 3600);
    std::lock_guard lock(mu_);
    if (entries_.size() >= capacity_) entries_.erase(entries_.begin());
    entries_[key] = Entry{response, Clock::now(), ttl};
  }

 private:
  struct Entry {
    Bytes response;
    Clock::time_point stored;
    std::int64_t ttl;
  };
  std::mutex mu_;
  size_t capacity_;
  std::unordered_map<std::string, Entry> entries_;
};

// One thread owning a c-ares channel; other threads hand it queries.
class Forwarder {
 public:
  Status start(const std::vector<std::string>& upstreams) {
    wake_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_ < 0) return failErrno("eventfd");
    ares_options opts{};
    opts.timeout = 2000;
    opts.tries = 2;
    if (int rc = ares_init_options(&channel_, &opts, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES); rc != ARES_SUCCESS)
      return fail(EIO, std::string("c-ares init: ") + ares_strerror(rc));
    std::string csv;
    for (const auto& u : upstreams) {
      auto sa = parseEndpoint(u, 53);
      if (!sa) return fail(sa.error().wrap("upstream"));
      if (!csv.empty()) csv += ",";
      csv += u.find(':') == std::string::npos ? u + ":53" : u;
    }
    hasUpstreams_ = !csv.empty();
    if (hasUpstreams_) {
      if (int rc = ares_set_servers_ports_csv(channel_, csv.c_str()); rc != ARES_SUCCESS)
        return fail(EINVAL, "upstreams \"" + csv + "\": " + ares_strerror(rc));
    }
    thread_ = std::thread([this] { loop(); });
    return {};
  }

  ~Forwarder() { stop(); }

  // Idempotent: also cleans up after a start() that failed half way.
  void stop() {
    stop_ = true;
    if (wake_ >= 0) {
      std::uint64_t one = 1;
      [[maybe_unused]] auto n = write(wake_, &one, sizeof one);
    }
    if (thread_.joinable()) thread_.join();
    if (channel_) ares_destroy(channel_);
    channel_ = nullptr;
    if (wake_ >= 0) close(wake_);
    wake_ = -1;
  }

  void forward(Bytes query, Reply reply) {
    if (!hasUpstreams_) {
      reply(errorResponse(query.data(), query.size(), kServFail, true));
      return;
    }
    {
      std::lock_guard lock(mu_);
      queue_.push_back({std::move(query), std::move(reply)});
    }
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = write(wake_, &one, sizeof one);
  }

 private:
  struct Pending {
    Bytes query;
    Reply reply;
  };

  static void onAnswer(void* arg, int status, int, unsigned char* abuf, int alen) {
    std::unique_ptr<Pending> p(static_cast<Pending*>(arg));
    if (status == ARES_SUCCESS && abuf != nullptr && alen >= 12) {
      Bytes answer(abuf, abuf + alen);
      answer[0] = p->query[0];
      answer[1] = p->query[1];
      p->reply(answer);
    } else {
      p->reply(errorResponse(p->query.data(), p->query.size(), kServFail, true));
    }
  }

  // Idle, the loop wakes every second for c-ares' timeouts; the batch and the
  // poll set keep their capacity so that costs no allocation.
  void loop() {
    std::vector<Pending> batch;
    std::vector<pollfd> fds;
    while (!stop_) {
      {
        std::lock_guard lock(mu_);
        batch.swap(queue_);
      }
      for (auto& p : batch) {
        auto* owned = new Pending(std::move(p));
        ares_send(channel_, owned->query.data(), static_cast<int>(owned->query.size()), onAnswer, owned);
      }
      batch.clear();
      ares_socket_t socks[ARES_GETSOCK_MAXNUM];
      int mask = ares_getsock(channel_, socks, ARES_GETSOCK_MAXNUM);
      fds.assign(1, {wake_, POLLIN, 0});
      for (int i = 0; i < ARES_GETSOCK_MAXNUM; ++i) {
        short ev = 0;
        if (ARES_GETSOCK_READABLE(mask, i)) ev |= POLLIN;
        if (ARES_GETSOCK_WRITABLE(mask, i)) ev |= POLLOUT;
        if (ev) fds.push_back({socks[i], ev, 0});
      }
      timeval tv{1, 0}, maxtv{1, 0};
      ares_timeout(channel_, &maxtv, &tv);
      int timeoutMs = static_cast<int>(tv.tv_sec * 1000 + tv.tv_usec / 1000);
      poll(fds.data(), fds.size(), std::max(timeoutMs, 1));
      if (fds[0].revents & POLLIN) {
        std::uint64_t v;
        [[maybe_unused]] auto n = read(wake_, &v, sizeof v);
      }
      bool any = false;
      for (size_t i = 1; i < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        any = true;
        ares_process_fd(channel_, (fds[i].revents & (POLLIN | POLLERR | POLLHUP)) ? fds[i].fd : ARES_SOCKET_BAD,
                        (fds[i].revents & POLLOUT) ? fds[i].fd : ARES_SOCKET_BAD);
      }
      if (!any) ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // timeouts
    }
    ares_cancel(channel_);
  }

  ares_channel channel_ = nullptr;
  bool hasUpstreams_ = false;
  int wake_ = -1;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<Pending> queue_;
  std::thread thread_;
};

bool inDomain(const std::string& name, const std::string& domain) {
  if (domain.empty()) return true;
  if (name.size() == domain.size()) return name == domain;
  return name.size() > domain.size() && name[name.size() - domain.size() - 1] == '.' &&
         name.compare(name.size() - domain.size(), domain.size(), domain) == 0;
}

// What a TCP connection's replies write to; replies for forwarded queries may
// come after the connection ended, so the fd is closed under the same lock.
struct TcpConnection {
  std::mutex mu;
  int fd = -1;
  bool closed = false;
  std::atomic<int> pending{0};
};

// The UDP loop reads up to kBatch queries with one recvmmsg and sends their
// answers with one sendmmsg: two system calls per batch instead of two per
// query (knotd does the same). Answers given on the UDP thread while it works
// through a batch are copied here; answers from other threads (forwarded
// queries) go out with their own sendto.
struct UdpBatch {
  static constexpr size_t kBatch = 32;
  int fd = -1;
  size_t count = 0;
  std::array<std::array<std::uint8_t, kMaxUdpPayload>, kBatch> data;
  std::array<sockaddr_in, kBatch> peers;
  std::array<iovec, kBatch> iov;
  std::array<mmsghdr, kBatch> msgs;

  bool add(int toFd, const sockaddr_in& peer, std::span<const std::uint8_t> out) {
    if (toFd != fd || count == kBatch || out.size() > data[count].size()) return false;
    std::memcpy(data[count].data(), out.data(), out.size());
    peers[count] = peer;
    iov[count] = {data[count].data(), out.size()};
    msgs[count].msg_hdr = {};
    msgs[count].msg_hdr.msg_name = &peers[count];
    msgs[count].msg_hdr.msg_namelen = sizeof(sockaddr_in);
    msgs[count].msg_hdr.msg_iov = &iov[count];
    msgs[count].msg_hdr.msg_iovlen = 1;
    ++count;
    return true;
  }
  void flush() {
    size_t sent = 0;
    while (sent < count) {
      int n = sendmmsg(fd, msgs.data() + sent, static_cast<unsigned>(count - sent), MSG_DONTWAIT);
      if (n > 0) {
        sent += static_cast<size_t>(n);
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        break;  // the socket's send buffer is full: dropped, as sendto would
      } else {
        ++sent;  // this one failed (its peer unreachable...): skip it
      }
    }
    count = 0;
  }
};
thread_local UdpBatch* udpBatch = nullptr;  // set on the UDP thread while it works through a batch

// Where an answer goes: a UDP client on one of our sockets, or a TCP
// connection. A plain value (a std::function holding the UDP peer would
// allocate for every query); copied into the callback of a forwarded query.
struct ReplyTo {
  int udpFd = -1;
  sockaddr_in peer{};
  std::shared_ptr<TcpConnection> tcp;

  void send(std::span<const std::uint8_t> out) const {
    if (!tcp) {
      if (udpBatch && udpBatch->add(udpFd, peer, out)) return;
      sendto(udpFd, out.data(), out.size(), MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&peer), sizeof peer);
      return;
    }
    std::lock_guard lock(tcp->mu);
    if (!tcp->closed) {
      // Length and message in one write: two writes would leave the message
      // behind Nagle's algorithm until the client's delayed ACK (~40 ms).
      std::uint8_t hdr[2] = {static_cast<std::uint8_t>(out.size() >> 8), static_cast<std::uint8_t>(out.size())};
      iovec parts[2] = {{hdr, 2}, {const_cast<std::uint8_t*>(out.data()), out.size()}};
      [[maybe_unused]] auto n = writev(tcp->fd, parts, 2);
    }
    --tcp->pending;
  }
};

}  // namespace

Result<StubDomain> parseStubDomain(const std::string& text) {
  auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size())
    return fail(EINVAL, "stub domain \"" + text + "\": want DOMAIN=IP[:PORT][,IP[:PORT]...]");
  StubDomain out;
  out.domain = text.substr(0, eq);
  std::transform(out.domain.begin(), out.domain.end(), out.domain.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  while (!out.domain.empty() && out.domain.back() == '.') out.domain.pop_back();
  if (out.domain.empty()) return fail(EINVAL, "stub domain \"" + text + "\": empty domain");
  std::stringstream list(text.substr(eq + 1));
  for (std::string u; std::getline(list, u, ',');) {
    if (u.empty()) continue;
    if (auto sa = parseEndpoint(u, 53); !sa) return fail(sa.error().wrap("stub domain " + out.domain));
    out.upstreams.push_back(u);
  }
  if (out.upstreams.empty()) return fail(EINVAL, "stub domain \"" + text + "\": no upstream");
  return out;
}

struct ClusterDns::Impl {
  DnsConfig config;
  // What a serving loop answers from. Each loop keeps its own copy and takes a
  // new one only when `published` moves: one relaxed load per query instead of
  // two std::atomic<shared_ptr> loads (each a spin lock and two reference-count
  // updates on a cache line every serving thread and the publisher share).
  struct Snapshot {
    std::uint64_t generation = 0;
    std::shared_ptr<const Zone> zone;
    std::shared_ptr<const ClusterDns::ClientNamespaces> clients;
  };
  std::mutex publishMu;
  Snapshot current;  // under publishMu
  std::atomic<std::uint64_t> published{0};
  // Replaced zones and client maps wait here until no loop holds them any
  // more, and are then freed by the publisher or the TCP loop: freeing 10,000
  // names takes milliseconds, which a serving thread dropping the last copy
  // would spend between two queries (under publishMu).
  std::vector<std::shared_ptr<const void>> retired;

  // Counters of one serving loop. A UDP loop owns its set alone and counts with
  // plain relaxed load + store (no locked instruction, no line shared with
  // another writer); the TCP connections share one set and add atomically.
  struct alignas(64) Counters {
    std::atomic<std::uint64_t> queries{0}, clusterAnswers{0}, forwarded{0}, cacheHits{0}, formErrors{0},
        autopathAnswers{0}, stubForwarded{0};
  };
  // The per-loop state handle() works in (instead of thread_locals, whose
  // first-use guard is checked on every access).
  struct Loop {
    Snapshot snapshot;
    Counters* counters = nullptr;
    bool ownCounters = false;  // single writer: no atomic read-modify-write needed
    Query query;
    ResponseWriter writer;

    void count(std::atomic<std::uint64_t> Counters::*which) const {
      auto& c = counters->*which;
      if (ownCounters)
        c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      else
        c.fetch_add(1, std::memory_order_relaxed);
    }
  };
  std::vector<std::unique_ptr<Counters>> udpCounters;  // one per UDP thread
  Counters tcpCounters;

  AnswerCache cache{10000};
  Forwarder forwarder;
  struct Stub {
    std::string domain;
    std::unique_ptr<Forwarder> forwarder;
  };
  std::vector<Stub> stubs;  // longest domain first
  std::vector<int> udpFds;
  std::vector<int> tcpFds;
  int stopFd = -1;
  std::atomic<bool> stop{false};
  // Building a zone leaves its transient maps (and the caller's copies of the
  // Services) in malloc's free lists, where they would stay counted in RSS
  // until the next build: the TCP loop, which wakes every second, hands them
  // back to the kernel soon after a publish (when the caller has freed them).
  std::atomic<bool> trimPending{false};
  std::vector<std::thread> threads;
  std::mutex connMu;
  std::unordered_map<std::uint64_t, std::thread> connections;  // by connection number
  std::vector<std::uint64_t> endedConnections;                // threads to join
  std::uint64_t nextConnection = 0;
  std::atomic<int> openConnections{0};
  std::atomic<std::uint64_t> tcpRefused{0};

  explicit Impl(const DnsConfig& c) : config(c), cache(c.cacheEntries) {}

  // Takes the published snapshot when it changed since the loop's copy.
  void refresh(Loop& loop) {
    if (published.load(std::memory_order_relaxed) == loop.snapshot.generation) return;
    std::lock_guard lock(publishMu);
    loop.snapshot = current;  // the copy it replaces is in `retired`: not freed here
  }

  // Replaces one part of the published snapshot; the old value is retired.
  template <typename T>
  void replace(std::shared_ptr<const T> Snapshot::*part, std::shared_ptr<const T> value) {
    {
      std::lock_guard lock(publishMu);
      if (current.*part) retired.push_back(std::move(current.*part));
      current.*part = std::move(value);
      current.generation = published.load(std::memory_order_relaxed) + 1;
      published.store(current.generation, std::memory_order_relaxed);
    }
    freeRetired();
  }

  // Frees the retired values no loop holds any more (called by the publisher
  // and by the TCP loop every second). A retired value's count only falls: the
  // loops copy `current`, never a retired value, so a count of one (our own
  // reference) stays one.
  void freeRetired() {
    std::vector<std::shared_ptr<const void>> done;
    {
      std::lock_guard lock(publishMu);
      auto unused = std::partition(retired.begin(), retired.end(), [](const auto& p) { return p.use_count() > 1; });
      std::move(unused, retired.end(), std::back_inserter(done));
      retired.erase(unused, retired.end());
    }
    if (!done.empty()) trimPending = true;
  }  // `done` is freed here, outside the lock

  // Answers one message; `limit` is the transport's size limit (UDP payload or 65535).
  // Looks `name` up in the cache or upstream and calls `done` with the raw answer.
  void resolveUpstream(Loop& loop, Bytes query, const Query& parsed, std::function<void(const Bytes&)> done) {
    std::string key = AnswerCache::keyOf(parsed);
    Bytes cached;
    if (cache.lookup(key, parsed.id, cached)) {
      loop.count(&Counters::cacheHits);
      done(cached);
      return;
    }
    loop.count(&Counters::forwarded);
    Forwarder* target = &forwarder;
    for (auto& stub : stubs) {
      if (inDomain(parsed.name, stub.domain)) {
        target = stub.forwarder.get();
        loop.count(&Counters::stubForwarded);
        break;
      }
    }
    target->forward(std::move(query), [this, key, done = std::move(done)](const Bytes& answer) {
      cache.store(key, answer);
      done(answer);
    });
  }

  // Server-side search-path expansion for a client whose namespace we know:
  // "<x>.<ns>.svc.<domain>" that does not exist is what a pod in <ns> asks first
  // for <x>; answer with what its later search candidates would find. Returns
  // false when the query is not such a case.
  bool autopath(Loop& loop, std::uint32_t clientIp, bool udp, const ReplyTo& reply) {
    const Query& q = loop.query;
    const Zone& z = *loop.snapshot.zone;
    const auto* known = loop.snapshot.clients.get();
    if (!known || q.qclass != kClassIN) return false;
    auto it = known->find(clientIp);
    if (it == known->end()) return false;
    // Every query of a pod on this node passes here: match ".<ns>.svc.<domain>"
    // piece by piece rather than building the suffix.
    const std::string& ns = it->second;
    std::string_view name = q.name;
    size_t suffixSize = 1 + ns.size() + 5 + z.domain().size();
    if (name.size() <= suffixSize) return false;
    std::string_view suffix = name.substr(name.size() - suffixSize);
    if (suffix[0] != '.' || suffix.substr(1, ns.size()) != ns || suffix.substr(1 + ns.size(), 5) != ".svc." ||
        suffix.substr(6 + ns.size()) != z.domain())
      return false;
    if (z.exists(q.name)) return false;
    std::string x(name.substr(0, name.size() - suffixSize));
    size_t limit = udp ? q.udpPayload : 65535;
    ResponseWriter& writer = loop.writer;
    for (const std::string& candidate : {x + ".svc." + z.domain(), x + "." + z.domain(), x}) {
      if (!z.authoritativeFor(candidate)) continue;
      if (!z.exists(candidate) && candidate != x) continue;
      writer.reset(q, kNoError, true);
      writer.addCname(q.name, z.ttl(), candidate);
      writer.setRcode(z.appendAnswer(candidate, q.qtype, writer));
      loop.count(&Counters::autopathAnswers);
      reply.send(writer.finish(limit));
      return true;
    }
    // Not in the cluster: the client would end on <x> itself, upstream.
    Query upstream = q;
    upstream.name = x;
    upstream.wireNameLength = 0;
    loop.count(&Counters::autopathAnswers);
    auto done = [q, x, limit, zoneRef = loop.snapshot.zone, reply](const Bytes& answer) {
      ResponseWriter w;
      w.reset(q, kNoError, false);
      w.addCname(q.name, zoneRef->ttl(), x);
      auto rcode = copyAnswers(answer.data(), answer.size(), w);
      if (!rcode || (*rcode != kNoError && *rcode != kNxDomain)) {
        // The upstream failed (SERVFAIL, REFUSED, garbage): fall back to what
        // the asked name itself is in the zone, which holds it does not exist.
        zoneRef->answer(q, w);
      } else if (*rcode == kNxDomain) {
        // Every candidate failed: the original name does not exist either.
        w.reset(q, kNxDomain, true);
        w.addSoa(zoneRef->domain(), zoneRef->ttl(), zoneRef->ttl(), true);
      } else {
        w.setRcode(*rcode);
      }
      reply.send(w.finish(limit));
    };
    resolveUpstream(loop, buildQuery(q.id, x, q.qtype, true), upstream, std::move(done));
    return true;
  }

  void handle(Loop& loop, const std::uint8_t* data, size_t length, bool udp, const ReplyTo& reply,
              std::uint32_t clientIp = 0) {
    refresh(loop);
    Query& query = loop.query;
    ResponseWriter& writer = loop.writer;
    loop.count(&Counters::queries);
    bool headerRead = false;
    auto parsed = parseQuery(data, length, query, headerRead);
    if (!parsed) {
      loop.count(&Counters::formErrors);
      if (headerRead && !(data[2] & 0x80))
        reply.send(errorResponse(data, length, parsed.error().code == ENOTSUP ? kNotImp : kFormErr, false));
      return;  // garbage without a header (or a response) is dropped
    }
    size_t limit = udp ? query.udpPayload : 65535;
    const Zone* z = loop.snapshot.zone.get();
    if (z && clientIp != 0 && autopath(loop, clientIp, udp, reply)) return;
    if (z && query.qclass == kClassIN && z->authoritativeFor(query.name)) {
      loop.count(&Counters::clusterAnswers);
      z->answer(query, writer);
      reply.send(writer.finish(limit));
      return;
    }
    resolveUpstream(loop, Bytes(data, data + length), query, [limit, reply](const Bytes& answer) {
      if (answer.size() > limit) {
        Bytes cut = answer;
        truncateForUdp(cut, limit);
        reply.send(cut);
      } else {
        reply.send(answer);
      }
    });
  }

  void udpLoop(std::vector<int> fds, Counters* counters) {
    pthread_setname_np(pthread_self(), "ferry-dns-udp");
    auto loop = std::make_unique<Loop>();
    loop->counters = counters;
    loop->ownCounters = true;
    std::vector<pollfd> pfds{{stopFd, POLLIN, 0}};
    for (int fd : fds) pfds.push_back({fd, POLLIN, 0});
    constexpr size_t kBatch = UdpBatch::kBatch;
    // Received queries: a query longer than kMaxUdpPayload is cut (MSG_TRUNC)
    // and then fails to parse, as it would have before.
    auto in = std::make_unique<std::array<std::array<std::uint8_t, kMaxUdpPayload + 512>, kBatch>>();
    auto batch = std::make_unique<UdpBatch>();
    std::array<sockaddr_in, kBatch> peers{};
    std::array<iovec, kBatch> iov{};
    std::array<mmsghdr, kBatch> msgs{};
    for (size_t k = 0; k < kBatch; ++k) {
      iov[k] = {(*in)[k].data(), (*in)[k].size()};
      msgs[k].msg_hdr.msg_name = &peers[k];
      msgs[k].msg_hdr.msg_namelen = sizeof(sockaddr_in);
      msgs[k].msg_hdr.msg_iov = &iov[k];
      msgs[k].msg_hdr.msg_iovlen = 1;
    }
    ReplyTo reply;
    auto serveBatch = [&](int fd, int n) {
      batch->fd = fd;
      udpBatch = batch.get();
      for (int k = 0; k < n; ++k) {
        reply.udpFd = fd;
        reply.peer = peers[k];
        handle(*loop, (*in)[k].data(), msgs[k].msg_len, true, reply, ntohl(peers[k].sin_addr.s_addr));
        msgs[k].msg_hdr.msg_namelen = sizeof(sockaddr_in);  // recvmmsg wrote the peer's length there
      }
      udpBatch = nullptr;
      batch->flush();
    };
    if (fds.size() == 1) {
      // One socket (the usual case): block in recvmmsg itself, which returns as soon
      // as one query is there with whatever else is queued (MSG_WAITFORONE), so a
      // cycle is two system calls (receive, send) instead of three with a poll. The
      // receive timeout lets go of a replaced zone within a second; stop shuts the
      // socket down, which wakes the receive.
      int fd = fds[0];
      timeval second{1, 0};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &second, sizeof second);
      while (!stop) {
        int n = recvmmsg(fd, msgs.data(), kBatch, MSG_WAITFORONE, nullptr);
        refresh(*loop);
        if (n > 0 && !stop) serveBatch(fd, n);
      }
      return;
    }
    while (!stop) {
      int ready = poll(pfds.data(), pfds.size(), 1000);
      // Also when idle: let go of a replaced zone within a second.
      refresh(*loop);
      if (ready <= 0) continue;
      for (size_t i = 1; i < pfds.size(); ++i) {
        if (!(pfds[i].revents & POLLIN)) continue;
        int fd = pfds[i].fd;
        while (true) {
          int n = recvmmsg(fd, msgs.data(), kBatch, MSG_DONTWAIT, nullptr);
          if (n <= 0) break;
          serveBatch(fd, n);
          if (static_cast<size_t>(n) < kBatch) break;  // the socket is drained
        }
      }
    }
  }

  // Reads exactly n bytes; false on EOF, error, stop, or an idle connection
  // (RFC 7766: servers close idle connections).
  bool readFull(int fd, std::uint8_t* p, size_t n) {
    while (n > 0) {
      pollfd pfds[2] = {{fd, POLLIN, 0}, {stopFd, POLLIN, 0}};
      if (poll(pfds, 2, config.tcpIdleTimeoutMs) <= 0 || stop || (pfds[1].revents & POLLIN)) return false;
      ssize_t r = read(fd, p, n);
      if (r <= 0) return false;
      p += r;
      n -= static_cast<size_t>(r);
    }
    return true;
  }

  void serveConnection(int fd, std::uint64_t number) {
    std::vector<std::uint8_t> msg;
    sockaddr_in peer{};
    socklen_t peerLen = sizeof peer;
    getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peerLen);
    std::uint32_t clientIp = ntohl(peer.sin_addr.s_addr);
    // A client that stops reading must not hold this thread forever.
    timeval sendTimeout{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &sendTimeout, sizeof sendTimeout);
    auto conn = std::make_shared<TcpConnection>();
    conn->fd = fd;
    ReplyTo reply;
    reply.tcp = conn;
    auto loop = std::make_unique<Loop>();
    loop->counters = &tcpCounters;
    while (!stop) {
      std::uint8_t lenBuf[2];
      if (!readFull(fd, lenBuf, 2)) break;
      size_t len = (lenBuf[0] << 8) | lenBuf[1];
      msg.resize(len);
      if (len == 0 || !readFull(fd, msg.data(), len)) break;
      ++conn->pending;
      handle(*loop, msg.data(), len, false, reply, clientIp);
    }
    // Forwarded answers may still be on their way: give them a moment, then
    // close (a later reply finds the connection closed and is dropped).
    for (int i = 0; i < 50 && conn->pending > 0 && !stop; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    {
      std::lock_guard lock(conn->mu);
      conn->closed = true;
      close(fd);
    }
    --openConnections;
    std::lock_guard lock(connMu);
    endedConnections.push_back(number);
  }

  // Joins the threads of connections that ended.
  void reapConnections() {
    std::vector<std::thread> done;
    {
      std::lock_guard lock(connMu);
      for (auto number : endedConnections) {
        auto it = connections.find(number);
        if (it == connections.end()) continue;
        done.push_back(std::move(it->second));
        connections.erase(it);
      }
      endedConnections.clear();
    }
    for (auto& t : done) t.join();
  }

  void tcpLoop() {
    std::vector<pollfd> pfds{{stopFd, POLLIN, 0}};
    for (int fd : tcpFds) pfds.push_back({fd, POLLIN, 0});
    while (!stop) {
      int ready = poll(pfds.data(), pfds.size(), 1000);
      reapConnections();
      freeRetired();
      if (trimPending.exchange(false)) malloc_trim(0);
      if (ready <= 0) continue;
      for (size_t i = 1; i < pfds.size(); ++i) {
        if (!(pfds[i].revents & POLLIN)) continue;
        int conn = accept4(pfds[i].fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (conn < 0) continue;
        if (openConnections >= config.maxTcpConnections) {  // bounded: TCP is the rare path
          ++tcpRefused;
          close(conn);
          continue;
        }
        ++openConnections;
        std::lock_guard lock(connMu);
        std::uint64_t number = nextConnection++;
        connections.emplace(number, std::thread([this, conn, number] { serveConnection(conn, number); }));
      }
    }
  }
};

ClusterDns::ClusterDns(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<ClusterDns>> ClusterDns::start(const DnsConfig& config) {
  auto impl = std::make_unique<Impl>(config);
  impl->current.zone = buildZone(config.clusterDomain, {}, {});
  impl->current.generation = impl->published = 1;
  impl->stopFd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  std::vector<std::vector<int>> perThread(std::max(1, config.udpThreads));
  for (const auto& l : config.listen) {
    auto sa = parseEndpoint(l, 53);
    if (!sa) return fail(sa.error().wrap("dns listen"));
    for (auto& fds : perThread) {
      auto fd = bindSocket(*sa, SOCK_DGRAM);
      if (!fd) return fail(fd.error().wrap("dns"));
      fds.push_back(*fd);
      impl->udpFds.push_back(*fd);
    }
    auto tcp = bindSocket(*sa, SOCK_STREAM);
    if (!tcp) return fail(tcp.error().wrap("dns"));
    impl->tcpFds.push_back(*tcp);
  }
  auto upstreams = config.upstreams.empty() ? resolvConfServers(config.resolvConf) : config.upstreams;
  if (auto st = impl->forwarder.start(upstreams); !st) return fail(st.error());
  for (const auto& stub : config.stubDomains) {
    if (stub.upstreams.empty()) return fail(EINVAL, "stub domain " + stub.domain + ": no upstream");
    auto forwarder = std::make_unique<Forwarder>();
    if (auto st = forwarder->start(stub.upstreams); !st) return fail(st.error().wrap("stub domain " + stub.domain));
    impl->stubs.push_back({stub.domain, std::move(forwarder)});
  }
  std::stable_sort(impl->stubs.begin(), impl->stubs.end(),
                   [](const Impl::Stub& a, const Impl::Stub& b) { return a.domain.size() > b.domain.size(); });
  Impl* raw = impl.get();
  for (auto& fds : perThread) {
    raw->udpCounters.push_back(std::make_unique<Impl::Counters>());
    raw->threads.emplace_back([raw, fds, counters = raw->udpCounters.back().get()] { raw->udpLoop(fds, counters); });
  }
  raw->threads.emplace_back([raw] { raw->tcpLoop(); });
  log::info("cluster DNS listening on {} (domain {}), {} upstream(s)", config.listen.empty() ? "-" : config.listen[0],
            config.clusterDomain, upstreams.size());
  return std::unique_ptr<ClusterDns>(new ClusterDns(std::move(impl)));
}

ClusterDns::~ClusterDns() {
  impl_->stop = true;
  std::uint64_t one = 1;
  [[maybe_unused]] auto n = write(impl_->stopFd, &one, sizeof one);
  // Wakes a UDP loop blocked in recvmmsg (on an unconnected UDP socket shutdown
  // fails with ENOTCONN but still marks it shut and wakes its readers).
  for (int fd : impl_->udpFds) shutdown(fd, SHUT_RD);
  for (auto& t : impl_->threads) t.join();
  // The TCP loop has ended: no new connections; the open ones see stop.
  std::unordered_map<std::uint64_t, std::thread> connections;
  {
    std::lock_guard lock(impl_->connMu);
    connections.swap(impl_->connections);
  }
  for (auto& [number, t] : connections) t.join();
  impl_->forwarder.stop();
  for (auto& stub : impl_->stubs) stub.forwarder->stop();
  for (int fd : impl_->udpFds) close(fd);
  for (int fd : impl_->tcpFds) close(fd);
  close(impl_->stopFd);
}

void ClusterDns::publish(std::shared_ptr<const Zone> zone) {
  impl_->replace(&Impl::Snapshot::zone, std::move(zone));
  impl_->trimPending = true;
}

void ClusterDns::publishClients(std::shared_ptr<const ClientNamespaces> clients) {
  impl_->replace(&Impl::Snapshot::clients, std::move(clients));
}

DnsCounters ClusterDns::counters() const {
  DnsCounters c;
  auto add = [&c](const Impl::Counters& k) {
    c.queries += k.queries.load(std::memory_order_relaxed);
    c.clusterAnswers += k.clusterAnswers.load(std::memory_order_relaxed);
    c.forwarded += k.forwarded.load(std::memory_order_relaxed);
    c.cacheHits += k.cacheHits.load(std::memory_order_relaxed);
    c.formErrors += k.formErrors.load(std::memory_order_relaxed);
    c.autopathAnswers += k.autopathAnswers.load(std::memory_order_relaxed);
    c.stubForwarded += k.stubForwarded.load(std::memory_order_relaxed);
  };
  for (const auto& k : impl_->udpCounters) add(*k);
  add(impl_->tcpCounters);
  c.tcpConnections = static_cast<std::uint64_t>(std::max(0, impl_->openConnections.load()));
  c.tcpRefused = impl_->tcpRefused;
  std::lock_guard lock(impl_->connMu);
  c.tcpThreads = impl_->connections.size();
  return c;
}

}  // namespace ferry::dns
