#include "agent/runtime/container_logs.h"

#include <fmt/format.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <deque>
#include <filesystem>
#include <thread>
#include <vector>

namespace ferry::runtime {

namespace {

// Longest line kept in one entry; longer lines are split into "P" entries, as CRI does.
constexpr size_t kMaxLineBytes = 16 * 1024;

void writeAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // a full disk must not kill the container's supervisor
    }
    data.remove_prefix(n);
  }
}

}  // namespace

std::string formatRfc3339Nano(std::chrono::system_clock::time_point t) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  std::time_t secs = ns / 1000000000;
  long frac = ns % 1000000000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:09d}Z", buf, frac);
}

CriLogWriter::CriLogWriter(std::string path, std::uint64_t maxBytes, int maxFiles)
    : path_(std::move(path)), maxBytes_(maxBytes), maxFiles_(std::max(1, maxFiles)) {
  if (path_.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path_).parent_path(), ec);
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  struct stat st {};
  if (fd_ >= 0 && fstat(fd_, &st) == 0) size_ = st.st_size;
}

CriLogWriter::~CriLogWriter() {
  flush();
  if (fd_ >= 0) ::close(fd_);
}

void CriLogWriter::write(std::string_view stream, std::string_view data) {
  std::string& pending = stream == "stderr" ? pendingStderr_ : pendingStdout_;
  pending.append(data);
  size_t start = 0;
  for (;;) {
    size_t nl = pending.find('\n', start);
    if (nl == std::string::npos) break;
    std::string_view line(pending.data() + start, nl - start);
    while (line.size() > kMaxLineBytes) {
      writeEntry(stream, 'P', line.substr(0, kMaxLineBytes));
      line.remove_prefix(kMaxLineBytes);
    }
    writeEntry(stream, 'F', line);
    start = nl + 1;
  }
  pending.erase(0, start);
  while (pending.size() > kMaxLineBytes) {
    writeEntry(stream, 'P', std::string_view(pending).substr(0, kMaxLineBytes));
    pending.erase(0, kMaxLineBytes);
  }
}

void CriLogWriter::flush() {
  if (!pendingStdout_.empty()) writeEntry("stdout", 'P', pendingStdout_);
  if (!pendingStderr_.empty()) writeEntry("stderr", 'P', pendingStderr_);
  pendingStdout_.clear();
  pendingStderr_.clear();
}

void CriLogWriter::writeEntry(std::string_view stream, char tag, std::string_view line) {
  if (fd_ < 0) return;
  std::string entry = fmt::format("{} {} {} {}\n", formatRfc3339Nano(std::chrono::system_clock::now()), stream, tag, line);
  writeAll(fd_, entry);
  size_ += entry.size();
  rotateIfNeeded();
}

void CriLogWriter::rotateIfNeeded() {
  if (maxBytes_ == 0 || size_ < maxBytes_) return;
  // <path>.N-1 → dropped, ..., <path> → <path>.1; then a fresh <path>.
  for (int i = maxFiles_ - 1; i >= 1; --i) {
    std::string from = i == 1 ? path_ : fmt::format("{}.{}", path_, i - 1);
    std::string to = fmt::format("{}.{}", path_, i);
    ::rename(from.c_str(), to.c_str());
  }
  if (maxFiles_ == 1) ::ftruncate(fd_, 0);
  ::close(fd_);
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  size_ = 0;
}

namespace {

struct LogEntry {
  std::string timestamp;
  std::chrono::system_clock::time_point time;
  bool partial = false;
  std::string content;
};

std::chrono::system_clock::time_point parseNano(const std::string& ts) {
  std::tm tm{};
  int consumed = 0;
  if (std::sscanf(ts.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                  &tm.tm_min, &tm.tm_sec, &consumed) != 6)
    return {};
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  std::int64_t ns = static_cast<std::int64_t>(timegm(&tm)) * 1000000000;
  const char* rest = ts.c_str() + consumed;
  if (*rest == '.') {
    std::int64_t scale = 100000000;
    for (++rest; *rest >= '0' && *rest <= '9'; ++rest, scale /= 10) ns += (*rest - '0') * scale;
  }
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(ns)));
}

// "<ts> <stream> <P|F> <content>"; false when the line is not a CRI entry.
bool parseEntry(std::string_view line, LogEntry& out) {
  size_t a = line.find(' ');
  if (a == std::string_view::npos) return false;
  size_t b = line.find(' ', a + 1);
  if (b == std::string_view::npos) return false;
  size_t c = line.find(' ', b + 1);
  out.timestamp = std::string(line.substr(0, a));
  out.time = parseNano(out.timestamp);
  std::string_view tag = c == std::string_view::npos ? line.substr(b + 1) : line.substr(b + 1, c - b - 1);
  out.partial = tag == "P";
  out.content = c == std::string_view::npos ? std::string() : std::string(line.substr(c + 1));
  return true;
}

// Complete user-visible lines from `text` (file content), partial entries joined.
void collectLines(const std::string& text, std::vector<LogEntry>& lines, LogEntry& partial, bool& havePartial) {
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) break;
    LogEntry e;
    if (parseEntry(std::string_view(text).substr(start, nl - start), e)) {
      if (havePartial) {
        partial.content += e.content;
        partial.partial = e.partial;
        e = partial;
      }
      if (e.partial) {
        partial = e;
        havePartial = true;
      } else {
        havePartial = false;
        lines.push_back(std::move(e));
      }
    }
    start = nl + 1;
  }
}

}  // namespace

Status streamLogs(const std::string& path, const LogOptions& options,
                  const std::function<bool(std::string_view)>& sink, const std::function<bool()>& keepFollowing) {
  std::vector<std::string> files;
  for (int i = 9; i >= 1; --i) {
    std::string rotated = fmt::format("{}.{}", path, i);
    if (::access(rotated.c_str(), R_OK) == 0) files.push_back(rotated);
  }
  if (::access(path.c_str(), R_OK) != 0 && files.empty()) return failErrno("open log " + path);
  files.push_back(path);

  std::vector<LogEntry> lines;
  LogEntry partial;
  bool havePartial = false;
  off_t offset = 0;
  ino_t liveInode = 0;
  for (const auto& f : files) {
    int fd = ::open(f.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    std::string text;
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      text.append(buf, n);
    }
    if (f == path) {
      // Only whole lines count; a trailing half-written one is read again while following.
      size_t lastNl = text.rfind('\n');
      offset = lastNl == std::string::npos ? 0 : lastNl + 1;
      struct stat st {};
      if (fstat(fd, &st) == 0) liveInode = st.st_ino;
    }
    ::close(fd);
    collectLines(text, lines, partial, havePartial);
  }

  std::optional<std::chrono::system_clock::time_point> since = options.sinceTime;
  if (options.sinceSeconds)
    since = std::chrono::system_clock::now() - std::chrono::seconds(*options.sinceSeconds);
  std::int64_t bytesLeft = options.limitBytes.value_or(-1);

  auto emit = [&](const LogEntry& e) -> bool {
    if (since && e.time < *since) return true;
    std::string out = options.timestamps ? e.timestamp + " " + e.content + "\n" : e.content + "\n";
    if (bytesLeft >= 0) {
      if (bytesLeft == 0) return false;
      if (static_cast<std::int64_t>(out.size()) > bytesLeft) out.resize(bytesLeft);
      bytesLeft -= out.size();
    }
    return sink(out);
  };

  size_t first = 0;
  if (options.tailLines) {
    std::vector<size_t> shown;
    for (size_t i = 0; i < lines.size(); ++i)
      if (!since || lines[i].time >= *since) shown.push_back(i);
    std::int64_t tail = std::max<std::int64_t>(0, *options.tailLines);
    first = shown.size() > static_cast<size_t>(tail) ? shown[shown.size() - tail] : (shown.empty() ? lines.size() : shown[0]);
    if (tail == 0) first = lines.size();
  }
  for (size_t i = first; i < lines.size(); ++i)
    if (!emit(lines[i])) return {};
  if (!options.follow) return {};

  // Follow: poll the live file for growth; a rotation (new inode) restarts at offset 0.
  std::string carry;
  while (!keepFollowing || keepFollowing()) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      struct stat st {};
      fstat(fd, &st);
      if (st.st_ino != liveInode) {
        liveInode = st.st_ino;
        offset = 0;
        carry.clear();
      }
      std::string text;
      char buf[65536];
      for (;;) {
        ssize_t n = ::pread(fd, buf, sizeof buf, offset);
        if (n <= 0) break;
        text.append(buf, n);
        offset += n;
      }
      ::close(fd);
      if (!text.empty()) {
        carry += text;
        size_t lastNl = carry.rfind('\n');
        if (lastNl != std::string::npos) {
          std::vector<LogEntry> fresh;
          collectLines(carry.substr(0, lastNl + 1), fresh, partial, havePartial);
          carry.erase(0, lastNl + 1);
          for (const auto& e : fresh)
            if (!emit(e)) return {};
        }
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return {};
}

}  // namespace ferry::runtime
