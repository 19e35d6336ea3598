// Container logs in the CRI format the kubelet uses:
//   2026-11-25T12:00:00.000000000Z stdout F a whole line
//   2026-11-25T12:00:00.000000000Z stderr P part of a line longer than the buffer
// Written by the shim, rotated by size to <path>.1 .. <path>.<maxFiles-1>; read back for
// `kubectl logs` with its options.
#pragma once

#include "api/error.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace ferry::runtime {

class CriLogWriter {
 public:
  CriLogWriter(std::string path, std::uint64_t maxBytes, int maxFiles);
  ~CriLogWriter();
  // Appends `data` from `stream` ("stdout"/"stderr"), split into lines; a trailing
  // incomplete line is kept until more data or flush().
  void write(std::string_view stream, std::string_view data);
  void flush();  // writes pending partial lines (as "P" entries)

 private:
  void writeEntry(std::string_view stream, char tag, std::string_view line);
  void rotateIfNeeded();
  std::string path_;
  std::uint64_t maxBytes_;
  int maxFiles_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
  std::string pendingStdout_, pendingStderr_;
};

// "2026-11-25T12:00:00.123456789Z"
std::string formatRfc3339Nano(std::chrono::system_clock::time_point t);

struct LogOptions {
  bool follow = false;
  std::optional<std::int64_t> tailLines;
  std::optional<std::int64_t> sinceSeconds;  // relative to now
  std::optional<std::chrono::system_clock::time_point> sinceTime;
  bool timestamps = false;  // prefix each line with its RFC 3339 nano timestamp
  std::optional<std::int64_t> limitBytes;
};

// Streams the log at `path` (and its rotated predecessors, oldest first) to `sink` as the
// user sees it (content only, or "timestamp content" with timestamps). With `follow`,
// keeps reading new entries until `keepFollowing()` returns false (checked ~every 100 ms)
// or `sink` returns false.
Status streamLogs(const std::string& path, const LogOptions& options,
                  const std::function<bool(std::string_view)>& sink,
                  const std::function<bool()>& keepFollowing = {});

}  // namespace ferry::runtime
