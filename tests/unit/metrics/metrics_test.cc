// The Prometheus text the metrics registry renders.
#include "api/metrics.h"

#include <gtest/gtest.h>

#include <thread>

using namespace ferry::metrics;

TEST(Metrics, CountersGaugesAndLabelsRenderAsPrometheusText) {
  Registry r;
  r.counter("requests_total", "Requests.", {{"verb", "GET"}, {"code", "200"}}).inc();
  r.counter("requests_total", "Requests.", {{"verb", "GET"}, {"code", "200"}}).inc(2);
  r.counter("requests_total", "Requests.", {{"verb", "PUT"}, {"code", "409"}}).inc();
  r.gauge("temperature", "A gauge.").set(21.5);
  r.gauge("quoted", "Escaping.", {{"path", "a\"b\\c"}}).set(1);
  std::string text = r.render();
  EXPECT_NE(text.find("# HELP requests_total Requests.\n# TYPE requests_total counter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("requests_total{verb=\"GET\",code=\"200\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("requests_total{verb=\"PUT\",code=\"409\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE temperature gauge\ntemperature 21.5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("quoted{path=\"a\\\"b\\\\c\"} 1\n"), std::string::npos) << text;
}

TEST(Metrics, HistogramBucketsAreCumulativeWithSumAndCount) {
  Registry r;
  auto& h = r.histogram("latency_seconds", "Latency.", {{"op", "sync"}}, {0.125, 1});
  h.observe(0.0625);
  h.observe(0.125);  // on the bound: counts in le="0.125"
  h.observe(0.5);
  h.observe(7);
  std::string text = r.render();
  EXPECT_NE(text.find("# TYPE latency_seconds histogram\n"), std::string::npos);
  EXPECT_NE(text.find("latency_seconds_bucket{op=\"sync\",le=\"0.125\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("latency_seconds_bucket{op=\"sync\",le=\"1\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("latency_seconds_bucket{op=\"sync\",le=\"+Inf\"} 4\n"), std::string::npos) << text;
  EXPECT_NE(text.find("latency_seconds_sum{op=\"sync\"} 7.6875\n"), std::string::npos) << text;
  EXPECT_NE(text.find("latency_seconds_count{op=\"sync\"} 4\n"), std::string::npos) << text;
}

TEST(Metrics, ConcurrentUpdatesAreNotLost) {
  Registry r;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        r.counter("c_total", "C.").inc();
        r.histogram("h_seconds", "H.").observe(0.001);
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(r.counter("c_total", "C.").value(), 40000);
  EXPECT_EQ(r.histogram("h_seconds", "H.").count(), 40000u);
}
