#include "api/base64.h"
#include "api/types.h"

#include <gtest/gtest.h>

using ferry::api::Json;

TEST(ServiceView, DefaultsTargetPortToPortAndReadsSelector) {
  auto svc = ferry::api::Service::fromJson(Json::parse(R"({
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"clusterIP": "10.43.0.20", "selector": {"app": "web"},
             "ports": [{"port": 80}, {"name": "metrics", "port": 9090, "targetPort": "prom"}]}})"));
  ASSERT_TRUE(svc.has_value()) << svc.error().message;
  EXPECT_EQ(svc->ports.size(), 2u);
  EXPECT_EQ(svc->ports[0].targetPort.number, 80);
  EXPECT_TRUE(svc->ports[1].targetPort.isString);
  EXPECT_EQ(svc->ports[1].targetPort.text, "prom");
  EXPECT_EQ(svc->selector.at("app"), "web");
  EXPECT_FALSE(svc->headless());
}

TEST(ServiceView, RejectsPortOutOfRangeNamingTheField) {
  auto svc = ferry::api::Service::fromJson(Json::parse(R"({"metadata":{"name":"x","namespace":"d"},
    "spec":{"ports":[{"port":70000}]}})"));
  ASSERT_FALSE(svc.has_value());
  EXPECT_NE(svc.error().message.find("spec.ports[0].port"), std::string::npos);
}

TEST(EndpointSliceView, MissingReadyMeansReady) {
  auto slice = ferry::api::EndpointSlice::fromJson(Json::parse(R"({
    "metadata": {"name": "web-abc", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
    "addressType": "IPv4", "ports": [{"port": 8080, "protocol": "TCP"}],
    "endpoints": [{"addresses": ["10.42.0.5"]},
                  {"addresses": ["10.42.0.6"], "conditions": {"ready": false, "serving": true, "terminating": true}}]})"));
  ASSERT_TRUE(slice.has_value());
  EXPECT_EQ(slice->serviceName, "web");
  EXPECT_TRUE(slice->endpoints[0].ready);
  EXPECT_FALSE(slice->endpoints[1].ready);
  EXPECT_TRUE(slice->endpoints[1].serving);
  EXPECT_TRUE(slice->endpoints[1].terminating);
}

TEST(Rfc3339, RoundTrips) {
  EXPECT_EQ(ferry::api::parseRfc3339(ferry::api::toRfc3339(1700000000)), 1700000000);
  EXPECT_EQ(ferry::api::parseRfc3339("2023-11-14T22:13:20.123+01:00"), 1700000000 - 3600);
  EXPECT_EQ(ferry::api::parseRfc3339("garbage"), -1);
}

TEST(Base64, DecodesPaddedAndWrappedTextAndNamesBadInput) {
  EXPECT_EQ(ferry::api::base64Decode("aGVsbG8=").value_or("?"), "hello");
  EXPECT_EQ(ferry::api::base64Decode("aGVs\nbG8gd29y\nbGQ=").value_or("?"), "hello world");
  auto bad = ferry::api::base64Decode("aGV*bG8=");
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message.find("offset 3"), std::string::npos) << bad.error().message;
}

TEST(Base64, EncodesWithPaddingAndRoundTripsBinary) {
  EXPECT_EQ(ferry::api::base64Encode(""), "");
  EXPECT_EQ(ferry::api::base64Encode("f"), "Zg==");
  EXPECT_EQ(ferry::api::base64Encode("fo"), "Zm8=");
  EXPECT_EQ(ferry::api::base64Encode("foo"), "Zm9v");
  EXPECT_EQ(ferry::api::base64Encode("foobar"), "Zm9vYmFy");  // RFC 4648 test vectors
  std::string binary;
  for (int i = 0; i < 256; ++i) binary.push_back(static_cast<char>(i));
  EXPECT_EQ(ferry::api::base64Decode(ferry::api::base64Encode(binary)).value_or("?"), binary);
  EXPECT_EQ(ferry::api::base64Encode(std::string("\0", 1)), "AA==");  // etcd's "from the first key"
}
