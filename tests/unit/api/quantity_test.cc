#include "api/quantity.h"

#include <gtest/gtest.h>

using ferry::api::Quantity;

namespace {

std::string roundTrip(std::string_view text) {
  auto q = Quantity::parse(text);
  if (!q) return "ERROR: " + q.error().message;
  return q->toString();
}

}  // namespace

TEST(Quantity, CanonicalFormsAsKubernetesPrintsThem) {
  struct Case {
    const char* in;
    const char* out;
  } cases[] = {
      {"0", "0"},          {"0m", "0"},        {"0Ki", "0"},         {"-0", "0"},          {"0.0", "0"},
      {"500m", "500m"},    {"0.5", "500m"},    {"2", "2"},           {"128Mi", "128Mi"},   {"1G", "1G"},
      {"1e3", "1e3"},      {"1E3", "1E3"},     {"100k", "100k"},     {"1.5Gi", "1536Mi"},  {"-1", "-1"},
      {"1000m", "1"},      {"1024Mi", "1Gi"},  {"1000k", "1M"},      {"1024", "1024"},     {"1Ki", "1Ki"},
      {"1.5Ki", "1536"},   {"0.5Ki", "512"},   {"1.25Mi", "1280Ki"}, {"0.1", "100m"},      {"0.001", "1m"},
      {"0.0001", "100u"},  {"1.1", "1100m"},   {"12e6", "12e6"},     {"1e-3", "1e-3"},     {"-0.5", "-500m"},
      {"0.000000001", "1n"}, {"1000000n", "1m"}, {"1.5e3", "1500"},  {"100e-3", "100e-3"}, {"1000e-3", "1"},
      {"2048Ki", "2Mi"},   {"1Gi", "1Gi"},     {"8Gi", "8Gi"},       {"1E", "1E"},         {"1.0", "1"},
      {"10", "10"},        {"1000", "1k"},     {"1M", "1M"},         {"5000M", "5G"},      {"0.01Ki", "10240m"},
      {"1e0", "1e0"}, {"1.0e0", "1"},        {"1.0e3", "1e3"},   {"4096", "4096"},     {"1000Mi", "1000Mi"},
  };
  for (const auto& c : cases) EXPECT_EQ(roundTrip(c.in), c.out) << "input " << c.in;
}

TEST(Quantity, FinerThanNanoRoundsUpToOneNano) {
  EXPECT_EQ(roundTrip("0.0000000001"), "1n");
  EXPECT_EQ(roundTrip("1e-100"), "1e-9");
  EXPECT_EQ(roundTrip("1.0000000001"), "1000000001n");
  EXPECT_EQ(roundTrip("-0.0000000001"), "-1n");
}

TEST(Quantity, KeepsTextKubernetesConsidersCanonical) {
  // Kubernetes' fast path stores these strings as written.
  EXPECT_EQ(roundTrip("+5"), "+5");
  EXPECT_EQ(roundTrip("1.500k"), "1.500k");
  EXPECT_EQ(roundTrip("3Mi"), "3Mi");
  // ... and these are recomputed.
  EXPECT_EQ(roundTrip("05"), "05");
  EXPECT_EQ(roundTrip("8Mi"), "8Mi");
  EXPECT_EQ(roundTrip("16Mi"), "16Mi");
  EXPECT_EQ(Quantity::parse("1.500k")->canonical(), "1500");
}

TEST(Quantity, ValueAndMilliValueRoundUp) {
  EXPECT_EQ(Quantity::parse("500m")->milliValue(), 500);
  EXPECT_EQ(Quantity::parse("0.5")->milliValue(), 500);
  EXPECT_EQ(Quantity::parse("500m")->value(), 1);
  EXPECT_EQ(Quantity::parse("2")->milliValue(), 2000);
  EXPECT_EQ(Quantity::parse("1n")->milliValue(), 1);
  EXPECT_EQ(Quantity::parse("1n")->value(), 1);
  EXPECT_EQ(Quantity::parse("1.0001m")->milliValue(), 2);
  EXPECT_EQ(Quantity::parse("128Mi")->value(), 128 * 1024 * 1024);
  EXPECT_EQ(Quantity::parse("1G")->value(), 1'000'000'000);
  EXPECT_EQ(Quantity::parse("1e3")->value(), 1000);
  EXPECT_EQ(Quantity::parse("100k")->value(), 100000);
  EXPECT_EQ(Quantity::parse("1.5Gi")->value(), 1610612736);
  EXPECT_EQ(Quantity::parse("-1")->value(), -1);
  EXPECT_EQ(Quantity::parse("-1.5")->value(), -2);  // away from zero
  EXPECT_EQ(Quantity::parse("7Ei")->value(), 7LL << 60);
  EXPECT_EQ(Quantity::parse("9223372036854775807")->value(), INT64_MAX);
  // Milli of a huge value saturates instead of wrapping.
  EXPECT_EQ(Quantity::parse("7Ei")->milliValue(), INT64_MAX);
}

TEST(Quantity, RejectsBadInputNamingTheProblem) {
  auto expectError = [](const char* text, const char* fragment) {
    auto q = Quantity::parse(text);
    ASSERT_FALSE(q.has_value()) << text << " parsed as " << q->toString();
    EXPECT_NE(q.error().message.find(fragment), std::string::npos) << text << ": " << q.error().message;
  };
  expectError("", "empty");
  expectError("abc", "must start with a number");
  expectError("-", "must start with a number");
  expectError(".", "must start with a number");
  expectError("1Kii", "unknown suffix \"Kii\"");
  expectError("1K", "unknown suffix \"K\"");
  expectError("1 Ki", "unexpected character ' '");
  expectError("1.1.1", "unexpected character '.'");
  expectError("1e", "unknown suffix");
  expectError("1e3.5", "unexpected character '.'");
  expectError("10E", "too large");
  expectError("8Ei", "too large");
  expectError("1e19", "too large");
  expectError("9223372036854775808", "too large");
  expectError("99999999999999999999999999999999999999999999", "too large");
  expectError("1e99999999999999999999", "unknown suffix");
}

TEST(Quantity, ComparesAndAddsExactly) {
  auto a = *Quantity::parse("500m");
  auto b = *Quantity::parse("0.5");
  EXPECT_EQ(a, b);
  EXPECT_LT(*Quantity::parse("1Ki"), *Quantity::parse("1.1k"));
  EXPECT_GT(*Quantity::parse("1Gi"), *Quantity::parse("1G"));
  auto sum = a.add(b);
  ASSERT_TRUE(sum);
  EXPECT_EQ(sum->toString(), "1");
  auto mem = Quantity::parse("512Mi")->add(*Quantity::parse("512Mi"));
  EXPECT_EQ(mem->toString(), "1Gi");
  // A zero left side takes the right side's format.
  EXPECT_EQ(Quantity{}.add(*Quantity::parse("1Ki"))->toString(), "1Ki");
  auto overflow = Quantity::parse("7Ei")->add(*Quantity::parse("7Ei"));
  EXPECT_FALSE(overflow.has_value());
  EXPECT_EQ(Quantity::parse("1")->subtract(*Quantity::parse("250m"))->toString(), "750m");
  EXPECT_EQ(Quantity::fromMilli(1500).toString(), "1500m");
  EXPECT_EQ(Quantity::fromValue(2048, Quantity::Format::BinarySI).toString(), "2Ki");
}

TEST(Quantity, FromJsonAcceptsNumbers) {
  EXPECT_EQ(Quantity::fromJson(ferry::api::Json(2))->milliValue(), 2000);
  EXPECT_EQ(Quantity::fromJson(ferry::api::Json(0.5))->milliValue(), 500);
  EXPECT_EQ(Quantity::fromJson(ferry::api::Json("128Mi"))->value(), 128 << 20);
  EXPECT_FALSE(Quantity::fromJson(ferry::api::Json::array()).has_value());
}
