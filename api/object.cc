#include "api/object.h"

#include <cstdio>
#include <ctime>

namespace ferry::api {

std::string toRfc3339(std::int64_t unixSeconds) {
  std::time_t t = static_cast<std::time_t>(unixSeconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string nowRfc3339() { return toRfc3339(std::time(nullptr)); }

std::int64_t parseRfc3339(const std::string& text) {
  std::tm tm{};
  int consumed = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                  &tm.tm_min, &tm.tm_sec, &consumed) != 6) {
    return -1;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  std::int64_t seconds = timegm(&tm);
  const char* rest = text.c_str() + consumed;
  if (*rest == '.') {
    ++rest;
    while (*rest >= '0' && *rest <= '9') ++rest;
  }
  if (*rest == 'Z' || *rest == 'z') return seconds;
  int oh = 0, om = 0;
  if ((*rest == '+' || *rest == '-') && std::sscanf(rest + 1, "%2d:%2d", &oh, &om) == 2) {
    std::int64_t offset = oh * 3600 + om * 60;
    return *rest == '+' ? seconds - offset : seconds + offset;
  }
  return -1;
}

}  // namespace ferry::api
