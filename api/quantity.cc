#include "api/quantity.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <limits>

namespace ferry::api {
namespace {

using i128 = __int128;
using u128 = unsigned __int128;

constexpr std::int64_t kNanoPerUnit = 1'000'000'000;
// Largest magnitude accepted: int64 max whole units.
constexpr u128 kMaxNanos = static_cast<u128>(std::numeric_limits<std::int64_t>::max()) * kNanoPerUnit;

bool isDigit(char c) { return c >= '0' && c <= '9'; }

std::string toDecimal(i128 v) {
  if (v == 0) return "0";
  bool negative = v < 0;
  u128 m = negative ? static_cast<u128>(-v) : static_cast<u128>(v);
  char buf[48];
  int pos = sizeof buf;
  while (m != 0) {
    buf[--pos] = static_cast<char>('0' + static_cast<int>(m % 10));
    m /= 10;
  }
  if (negative) buf[--pos] = '-';
  return std::string(buf + pos, sizeof buf - pos);
}

struct Suffix {
  int base = 10;  // 10 or 2
  long exponent = 0;
  Quantity::Format format = Quantity::Format::DecimalSI;
};

// Interprets a suffix exactly as Kubernetes' suffixer does.
bool interpretSuffix(std::string_view s, Suffix& out) {
  struct Entry {
    std::string_view text;
    int base;
    int exponent;
  };
  static constexpr Entry table[] = {
      {"", 10, 0},   {"n", 10, -9}, {"u", 10, -6}, {"m", 10, -3}, {"k", 10, 3},   {"M", 10, 6},
      {"G", 10, 9},  {"T", 10, 12}, {"P", 10, 15}, {"E", 10, 18}, {"Ki", 2, 10},  {"Mi", 2, 20},
      {"Gi", 2, 30}, {"Ti", 2, 40}, {"Pi", 2, 50}, {"Ei", 2, 60},
  };
  for (const auto& e : table) {
    if (e.text == s) {
      out.base = e.base;
      out.exponent = e.exponent;
      out.format = e.base == 2 ? Quantity::Format::BinarySI : Quantity::Format::DecimalSI;
      return true;
    }
  }
  if (s.size() > 1 && (s[0] == 'e' || s[0] == 'E')) {
    std::string_view digits = s.substr(1);
    if (!digits.empty() && digits[0] == '+') digits.remove_prefix(1);  // Go's ParseInt accepts "+3"
    long long v = 0;
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    if (ec != std::errc{} || ptr != digits.data() + digits.size() || digits.empty()) return false;
    out.base = 10;
    out.exponent = static_cast<long>(std::clamp<long long>(v, -100000, 100000));
    out.format = Quantity::Format::DecimalExponent;
    return true;
  }
  return false;
}

// ceil(|D| * multiplier / 10^shift) for the digit string D, where shift may
// be negative (multiply). Returns false when the result exceeds kMaxNanos.
bool scaleDigits(std::string_view digits, u128 multiplier, long shift, u128& result) {
  // Leading zeros carry no value; dropping them keeps the bounds simple.
  while (!digits.empty() && digits.front() == '0') digits.remove_prefix(1);
  result = 0;
  if (digits.empty()) return true;
  if (shift < 0) {
    // Whole number followed by -shift zeros.
    if (static_cast<long>(digits.size()) - shift > 40) return false;
    u128 v = 0;
    for (char c : digits) {
      v = v * 10 + static_cast<unsigned>(c - '0');
      if (v > kMaxNanos) return false;
    }
    for (long i = 0; i < -shift; ++i) {
      v *= 10;
      if (v > kMaxNanos) return false;
    }
    if (v > kMaxNanos / multiplier) return false;
    result = v * multiplier;
    return true;
  }
  const long n = static_cast<long>(digits.size());
  if (shift > n + 20) {
    // The value is far below one nano: Kubernetes rounds it up to 1n.
    result = 1;
    return true;
  }
  const long integerDigits = std::max(0L, n - shift);
  u128 whole = 0;
  for (long i = 0; i < integerDigits; ++i) {
    whole = whole * 10 + static_cast<unsigned>(digits[i] - '0');
    if (whole > kMaxNanos) return false;
  }
  if (whole != 0 && whole > kMaxNanos / multiplier) return false;
  whole *= multiplier;
  // The fractional digits times the multiplier, computed from the least
  // significant digit: the final carry is the integer part of the product,
  // and any non-zero digit left behind means the result must round up.
  u128 carry = 0;
  bool inexact = false;
  for (long i = n - 1; i >= integerDigits; --i) {
    u128 t = static_cast<u128>(digits[i] - '0') * multiplier + carry;
    if (t % 10 != 0) inexact = true;
    carry = t / 10;
  }
  // Digits implied between the point and the first written fractional digit
  // (shift > n): each divides the carry by ten.
  for (long i = n; i < shift; ++i) {
    if (carry % 10 != 0) inexact = true;
    carry /= 10;
  }
  result = whole + carry + (inexact ? 1 : 0);
  return result <= kMaxNanos;
}

std::int64_t saturate(i128 v) {
  if (v > std::numeric_limits<std::int64_t>::max()) return std::numeric_limits<std::int64_t>::max();
  if (v < std::numeric_limits<std::int64_t>::min()) return std::numeric_limits<std::int64_t>::min();
  return static_cast<std::int64_t>(v);
}

// Divides rounding away from zero, as Kubernetes' ScaledValue does.
i128 divideUp(i128 v, i128 d) {
  i128 q = v / d;
  i128 r = v % d;
  if (r > 0) ++q;
  if (r < 0) --q;
  return q;
}

Error bad(std::string_view text, std::string_view why) {
  return Error::invalid(fmt::format("quantity \"{}\": {}", text, why));
}

}  // namespace

Result<Quantity> Quantity::parse(std::string_view text) {
  if (text.empty()) return fail(bad(text, "empty"));
  if (text.size() > 256) return fail(bad(text.substr(0, 32), "too long"));
  Quantity q;
  if (text == "0") {
    q.original_ = "0";
    return q;
  }
  std::size_t pos = 0;
  const std::size_t end = text.size();
  bool negative = false;
  if (text[0] == '-' || text[0] == '+') {
    negative = text[0] == '-';
    ++pos;
  }
  while (pos < end && text[pos] == '0') ++pos;
  bool sawDigit = pos > (negative || text[0] == '+' ? 1u : 0u);
  std::size_t numStart = pos;
  while (pos < end && isDigit(text[pos])) ++pos;
  std::string_view num = text.substr(numStart, pos - numStart);
  sawDigit = sawDigit || !num.empty();
  std::string_view denom;
  if (pos < end && text[pos] == '.') {
    ++pos;
    std::size_t denomStart = pos;
    while (pos < end && isDigit(text[pos])) ++pos;
    denom = text.substr(denomStart, pos - denomStart);
    sawDigit = sawDigit || !denom.empty();
  }
  if (!sawDigit) return fail(bad(text, "must start with a number, e.g. 500m, 0.5, 128Mi, 1e3"));
  std::string_view suffixText = text.substr(pos);
  // Kubernetes' scanner: suffix letters, an optional sign, then digits only.
  {
    std::size_t i = pos;
    while (i < end && std::string_view("eEinumkKMGTP").find(text[i]) != std::string_view::npos) ++i;
    if (i < end && (text[i] == '-' || text[i] == '+')) ++i;
    while (i < end && isDigit(text[i])) ++i;
    if (i != end) {
      return fail(bad(text, fmt::format("unexpected character '{}' at offset {}", text[i], i)));
    }
  }
  Suffix suffix;
  if (!interpretSuffix(suffixText, suffix)) {
    return fail(bad(text, fmt::format("unknown suffix \"{}\" (use n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei "
                                      "or an exponent like e3)",
                                      suffixText)));
  }

  std::string digits;
  digits.reserve(num.size() + denom.size());
  digits.append(num);
  digits.append(denom);
  u128 multiplier = 1;
  long shift = static_cast<long>(denom.size()) - 9;
  if (suffix.base == 2) {
    multiplier = static_cast<u128>(1) << suffix.exponent;
  } else {
    shift -= suffix.exponent;
  }
  u128 magnitude = 0;
  if (!scaleDigits(digits, multiplier, shift, magnitude)) {
    return fail(Error{ERANGE, fmt::format("quantity \"{}\": too large (the limit is 2^63-1)", text)});
  }
  q.nanos_ = negative ? -static_cast<i128>(magnitude) : static_cast<i128>(magnitude);
  q.format_ = suffix.format;
  if (q.format_ == Format::BinarySI && magnitude != 0 && magnitude < static_cast<u128>(kNanoPerUnit)) {
    q.format_ = Format::DecimalSI;
  }

  // Kubernetes keeps the text as written when its fast path deems it
  // canonical, and prints that text back; mirror the same test.
  std::string_view shifted = digits;
  std::string numberForFastPath(num.empty() ? "0" : std::string(num));
  numberForFastPath.append(denom);
  shifted = numberForFastPath;
  const long scale = (suffix.base == 10 ? suffix.exponent : 0) - static_cast<long>(denom.size());
  bool fastPath = false;
  if (suffix.base == 10) {
    fastPath = static_cast<long>(shifted.size()) <= 18;
  } else {
    fastPath = denom.empty() &&
               15 - static_cast<long>(num.size()) - static_cast<long>(static_cast<float>(suffix.exponent) * 3 / 10) - 1 >= 0;
  }
  if (fastPath && scale >= -9) {
    std::int64_t value = 0;
    auto [ptr, ec] = std::from_chars(shifted.data(), shifted.data() + shifted.size(), value);
    if (ec == std::errc{} && ptr == shifted.data() + shifted.size()) {
      i128 product = static_cast<i128>(value) * static_cast<i128>(multiplier);
      if (product <= std::numeric_limits<std::int64_t>::max()) {
        bool keep = false;
        if (suffix.base == 2) {
          keep = (value & 0x07) != 0;
        } else {
          keep = scale % 3 == 0 && !shifted.ends_with("000") && shifted[0] != '0';
        }
        if (keep) q.original_ = std::string(text);
      }
    }
  }
  return q;
}

Result<Quantity> Quantity::fromJson(const Json& value) {
  if (value.is_string()) return parse(value.get_ref<const std::string&>());
  if (value.is_number_integer() || value.is_number_unsigned()) return parse(value.dump());
  if (value.is_number_float()) {
    std::string text = value.dump();
    return parse(text);
  }
  if (value.is_null()) return Quantity{};
  return fail(Error::invalid(fmt::format("quantity must be a string or a number, not {}", value.type_name())));
}

Quantity Quantity::fromMilli(std::int64_t milli, Format format) {
  Quantity q;
  q.nanos_ = static_cast<i128>(milli) * 1'000'000;
  q.format_ = format;
  return q;
}

Quantity Quantity::fromValue(std::int64_t value, Format format) {
  Quantity q;
  q.nanos_ = static_cast<i128>(value) * kNanoPerUnit;
  q.format_ = format;
  return q;
}

std::int64_t Quantity::value() const { return saturate(divideUp(nanos_, kNanoPerUnit)); }
std::int64_t Quantity::milliValue() const { return saturate(divideUp(nanos_, 1'000'000)); }

std::string Quantity::toString() const {
  if (!original_.empty()) return original_;
  return canonical();
}

std::string Quantity::canonical() const {
  if (nanos_ == 0) return "0";
  Format format = format_;
  if (format == Format::BinarySI) {
    const i128 unit = kNanoPerUnit;
    if (nanos_ > -1024 * unit && nanos_ < 1024 * unit) {
      format = Format::DecimalSI;
    } else if (nanos_ % unit != 0) {
      format = Format::DecimalSI;  // not a whole number of units: keep the precision
    }
  }
  if (format == Format::BinarySI) {
    i128 amount = nanos_ / kNanoPerUnit;
    int exponent = 0;
    while (exponent < 6 && amount % 1024 == 0) {
      amount /= 1024;
      ++exponent;
    }
    static constexpr const char* binary[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
    return toDecimal(amount) + binary[exponent];
  }
  i128 mantissa = nanos_;
  int exponent = -9;
  while (mantissa % 10 == 0) {
    mantissa /= 10;
    ++exponent;
  }
  // Exponents are printed in multiples of three (floor).
  while (((exponent % 3) + 3) % 3 != 0) {
    mantissa *= 10;
    --exponent;
  }
  if (format == Format::DecimalExponent) {
    return exponent == 0 ? toDecimal(mantissa) : fmt::format("{}e{}", toDecimal(mantissa), exponent);
  }
  while (exponent > 18) {  // unreachable within the int64 range; keeps "E" as the largest suffix
    mantissa *= 1000;
    exponent -= 3;
  }
  static constexpr const char* decimal[] = {"n", "u", "m", "", "k", "M", "G", "T", "P", "E"};
  return toDecimal(mantissa) + decimal[(exponent + 9) / 3];
}

Result<Quantity> Quantity::add(const Quantity& other) const {
  Quantity sum;
  sum.format_ = nanos_ == 0 ? other.format_ : format_;
  sum.nanos_ = nanos_ + other.nanos_;  // both within ±kMaxNanos: cannot overflow i128
  if (sum.nanos_ > static_cast<i128>(kMaxNanos) || sum.nanos_ < -static_cast<i128>(kMaxNanos)) {
    return fail(Error{ERANGE, fmt::format("quantity {} + {}: too large (the limit is 2^63-1)", toString(),
                                          other.toString())});
  }
  return sum;
}

Result<Quantity> Quantity::subtract(const Quantity& other) const {
  Quantity negated = other;
  negated.nanos_ = -negated.nanos_;
  negated.original_.clear();
  return add(negated);
}

}  // namespace ferry::api
