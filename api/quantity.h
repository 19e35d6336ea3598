// resource.Quantity with Kubernetes' semantics: "500m", "0.5", "128Mi", "1e3".
// Values are kept exactly, in nano units (Kubernetes rounds anything finer up
// to 1n), and are limited to what fits an int64 of whole units: larger values
// are rejected rather than silently capped.
#pragma once

#include "api/error.h"
#include "api/object.h"

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

namespace ferry::api {

class Quantity {
 public:
  // How the value is printed, chosen by the suffix it was written with.
  enum class Format { DecimalSI, BinarySI, DecimalExponent };

  Quantity() = default;

  // Parses the Kubernetes quantity syntax: <sign><digits>[.<digits>]<suffix>,
  // suffix one of n u m "" k M G T P E | Ki Mi Gi Ti Pi Ei | e<int> E<int>.
  static Result<Quantity> parse(std::string_view text);
  // Accepts what Kubernetes' JSON decoder accepts: a string or a bare number.
  static Result<Quantity> fromJson(const Json& value);
  static Quantity fromMilli(std::int64_t milli, Format format = Format::DecimalSI);
  static Quantity fromValue(std::int64_t value, Format format = Format::DecimalSI);

  // Whole units, rounded up (away from zero), as Kubernetes' Value().
  // Saturates at the int64 limits.
  std::int64_t value() const;
  // Thousandths, rounded up (away from zero), as MilliValue(). Saturates.
  std::int64_t milliValue() const;
  // Exact value in nano units (1e-9).
  __int128 nanoValue() const { return nanos_; }
  Format format() const { return format_; }
  bool isZero() const { return nanos_ == 0; }
  int sign() const { return nanos_ < 0 ? -1 : (nanos_ > 0 ? 1 : 0); }

  // The string Kubernetes serializes: the input when it was already in
  // canonical shape, else the canonical form ("0.5" -> "500m", "1024Mi" -> "1Gi").
  std::string toString() const;
  // The canonical form, ignoring how the value was written.
  std::string canonical() const;

  // Exact sum; fails when the result leaves the supported range. A zero
  // left-hand side takes the format of the right, as Kubernetes' Add does.
  Result<Quantity> add(const Quantity& other) const;
  Result<Quantity> subtract(const Quantity& other) const;

  friend bool operator==(const Quantity& a, const Quantity& b) { return a.nanos_ == b.nanos_; }
  friend std::strong_ordering operator<=>(const Quantity& a, const Quantity& b) { return a.nanos_ <=> b.nanos_; }

 private:
  __int128 nanos_ = 0;
  Format format_ = Format::DecimalSI;
  std::string original_;  // kept only when Kubernetes would print it unchanged
};

}  // namespace ferry::api
