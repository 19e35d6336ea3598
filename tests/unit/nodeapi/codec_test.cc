// The node API's pieces that need no kernel: WebSocket framing, the Kubernetes channel
// protocol, path and query parsing, CPU rates, chunked bodies, metrics conversion.
#include "agent/server/node_api.h"
#include "agent/server/websocket.h"
#include "controlplane-lite/metrics_api.h"
#include "controlplane-lite/node_proxy.h"

#include <gtest/gtest.h>

using namespace ferry;
using namespace ferry::agent;
using api::Json;

TEST(WebSocket, AcceptKeyFromRfc6455) {
  EXPECT_EQ(webSocketAccept("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(WebSocket, MaskedFramesOfEverySizeRoundTrip) {
  for (std::size_t size : {0ul, 1ul, 125ul, 126ul, 127ul, 65535ul, 65536ul, 200000ul}) {
    std::string payload(size, 'x');
    for (std::size_t i = 0; i < size; ++i) payload[i] = static_cast<char>(i * 7);
    WsDecoder decoder;
    std::string frame = encodeWsFrame(WsOpcode::Binary, payload, true);
    // Fed one byte at a time for small frames: nothing comes out before the last byte.
    if (size < 300) {
      for (std::size_t i = 0; i + 1 < frame.size(); ++i) {
        decoder.feed(frame.substr(i, 1));
        auto m = decoder.next();
        ASSERT_TRUE(m.has_value());
        ASSERT_FALSE(m->has_value()) << "message before its last byte, size " << size;
      }
      decoder.feed(frame.substr(frame.size() - 1));
    } else {
      decoder.feed(frame);
    }
    auto m = decoder.next();
    ASSERT_TRUE(m.has_value()) << m.error().message;
    ASSERT_TRUE(m->has_value()) << size;
    EXPECT_EQ((*m)->opcode, WsOpcode::Binary);
    EXPECT_EQ((*m)->payload, payload) << size;
  }
}

TEST(WebSocket, UnmaskedServerFrameHeader) {
  std::string frame = encodeWsFrame(WsOpcode::Binary, "\x01hi");
  ASSERT_EQ(frame.size(), 5u);
  EXPECT_EQ(static_cast<unsigned char>(frame[0]), 0x82);
  EXPECT_EQ(frame[1], 3);
  EXPECT_EQ(frame.substr(2), "\x01hi");
}

TEST(WebSocket, FragmentsJoinAndControlFramesPassBetween) {
  // "ab" + ping + "cd" (fin): ping first, then "abcd".
  std::string first = encodeWsFrame(WsOpcode::Binary, "ab", true);
  first[0] = static_cast<char>(first[0] & 0x7f);  // clear FIN
  std::string second = encodeWsFrame(WsOpcode::Continuation, "cd", true);
  WsDecoder decoder;
  decoder.feed(first + encodeWsFrame(WsOpcode::Ping, "p", true) + second);
  auto ping = decoder.next();
  ASSERT_TRUE(ping && *ping);
  EXPECT_EQ((*ping)->opcode, WsOpcode::Ping);
  EXPECT_EQ((*ping)->payload, "p");
  auto data = decoder.next();
  ASSERT_TRUE(data && *data);
  EXPECT_EQ((*data)->payload, "abcd");
  auto none = decoder.next();
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->has_value());
}

TEST(WebSocket, BadFramesAreErrors) {
  {
    WsDecoder d;
    d.feed(std::string("\xc2\x00", 2));  // RSV1 set
    EXPECT_FALSE(d.next().has_value());
  }
  {
    WsDecoder d;
    d.feed(std::string("\x09\x00", 2));  // ping without FIN
    EXPECT_FALSE(d.next().has_value());
  }
  {
    WsDecoder d;
    d.feed(std::string("\x89\x7e\x00\x80", 4));  // ping of 128 bytes
    EXPECT_FALSE(d.next().has_value());
  }
  {
    WsDecoder d;
    d.feed(encodeWsFrame(WsOpcode::Continuation, "x", true));  // continuation of nothing
    EXPECT_FALSE(d.next().has_value());
  }
  {
    WsDecoder d(100);
    d.feed(std::string("\x82\x7f\x00\x00\x00\x01\x00\x00\x00\x00", 10));  // 4 GiB announced
    auto m = d.next();
    ASSERT_FALSE(m.has_value());
    EXPECT_EQ(m.error().code, EMSGSIZE);
  }
}

TEST(StreamProtocol, PrefersV5ThenV4) {
  EXPECT_EQ(chooseStreamProtocol("v4.channel.k8s.io, v5.channel.k8s.io"), "v5.channel.k8s.io");
  EXPECT_EQ(chooseStreamProtocol("channel.k8s.io,v4.channel.k8s.io"), "v4.channel.k8s.io");
  EXPECT_EQ(chooseStreamProtocol("base64.channel.k8s.io"), "");
  EXPECT_EQ(chooseStreamProtocol(""), "");
  EXPECT_EQ(channelPayload(kChannelStderr, "oops"), std::string("\x02oops"));
}

TEST(StreamProtocol, ExitStatusAsKubectlReadsIt) {
  auto ok = Json::parse(execStatusJson(0));
  EXPECT_EQ(ok["status"], "Success");
  auto bad = Json::parse(execStatusJson(3));
  EXPECT_EQ(bad["status"], "Failure");
  EXPECT_EQ(bad["reason"], "NonZeroExitCode");
  EXPECT_EQ(bad["details"]["causes"][0]["reason"], "ExitCode");
  EXPECT_EQ(bad["details"]["causes"][0]["message"], "3");
  auto size = parseTerminalSize(R"({"Width":120,"Height":40})");
  ASSERT_TRUE(size);
  EXPECT_EQ(size->width, 120);
  EXPECT_EQ(size->height, 40);
  EXPECT_FALSE(parseTerminalSize(R"({"Width":-1,"Height":40})"));
  EXPECT_FALSE(parseTerminalSize("nonsense"));
}

TEST(NodeApiPaths, KubeletShapedPaths) {
  auto logs = parseNodeApiPath("/containerLogs/default/web-1/app");
  EXPECT_EQ(logs.kind, NodeApiPath::Kind::ContainerLogs);
  EXPECT_EQ(logs.ns, "default");
  EXPECT_EQ(logs.pod, "web-1");
  EXPECT_EQ(logs.container, "app");
  EXPECT_EQ(parseNodeApiPath("/exec/kube-system/p/c").kind, NodeApiPath::Kind::Exec);
  EXPECT_EQ(parseNodeApiPath("/stats/summary").kind, NodeApiPath::Kind::StatsSummary);
  EXPECT_EQ(parseNodeApiPath("/healthz").kind, NodeApiPath::Kind::Healthz);
  EXPECT_EQ(parseNodeApiPath("/metrics").kind, NodeApiPath::Kind::Metrics);
  EXPECT_EQ(parseNodeApiPath("/containerLogs/default/web-1").kind, NodeApiPath::Kind::Unknown);
  EXPECT_EQ(parseNodeApiPath("/containerLogs/default/web-1/app/extra").kind, NodeApiPath::Kind::Unknown);
  EXPECT_EQ(parseNodeApiPath("/containerLogs/../web-1/app").kind, NodeApiPath::Kind::Unknown);
  EXPECT_EQ(parseNodeApiPath("/run/default/p/c").kind, NodeApiPath::Kind::Unknown);
}

TEST(NodeApiPaths, RepeatedCommandArguments) {
  auto argv = queryValues("command=sh&command=-c&command=echo%20a%26b&stdout=true&container=c", "command");
  ASSERT_EQ(argv.size(), 3u);
  EXPECT_EQ(argv[0], "sh");
  EXPECT_EQ(argv[1], "-c");
  EXPECT_EQ(argv[2], "echo a&b");
  EXPECT_TRUE(queryValues("?stdout=true", "command").empty());
}

TEST(CpuRate, RateBetweenTheTwoLatestSamples) {
  CpuRateTracker rates(std::chrono::seconds(1));
  auto t0 = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  EXPECT_FALSE(rates.observe("pod", t0, 1'000'000'000));
  // Too soon: still no pair.
  EXPECT_FALSE(rates.observe("pod", t0 + std::chrono::milliseconds(500), 1'100'000'000));
  // Two seconds later, half a core's worth more.
  auto r = rates.observe("pod", t0 + std::chrono::seconds(2), 2'000'000'000);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 500'000'000u);
  // A counter that went backwards (cgroup remade) starts over.
  EXPECT_FALSE(rates.observe("pod", t0 + std::chrono::seconds(4), 10));
  rates.forgetOlderThan(t0 + std::chrono::seconds(5));
  EXPECT_FALSE(rates.observe("pod", t0 + std::chrono::seconds(6), 20));
}

TEST(HttpClientParsing, ResponseHeadAndChunks) {
  auto partial = cp::parseResponseHead("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n");
  ASSERT_TRUE(partial);
  EXPECT_FALSE(partial->has_value());
  std::string text = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol:  v5.channel.k8s.io \r\n\r\nXYZ";
  auto head = cp::parseResponseHead(text);
  ASSERT_TRUE(head && *head);
  EXPECT_EQ((*head)->status, 101);
  EXPECT_EQ((*head)->headers["sec-websocket-protocol"], "v5.channel.k8s.io");
  EXPECT_EQ(text.substr((*head)->size), "XYZ");
  EXPECT_FALSE(cp::parseResponseHead("SMTP ready\r\n\r\n"));

  cp::ChunkedBodyDecoder d;
  std::string body = "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
  std::string out;
  for (char c : body) {  // byte by byte
    auto part = d.feed(std::string_view(&c, 1));
    ASSERT_TRUE(part) << part.error().message;
    out += *part;
  }
  EXPECT_EQ(out, "hello, world");
  EXPECT_TRUE(d.done());
  cp::ChunkedBodyDecoder bad;
  EXPECT_FALSE(bad.feed("zz\r\n"));
  cp::ChunkedBodyDecoder noCrlf;
  EXPECT_FALSE(noCrlf.feed("2\r\nabXX"));
}

TEST(Metrics, NodeEndpointFromNodeStatus) {
  Json node = {{"metadata", {{"name", "n1"}}},
               {"status", {{"addresses", {{{"type", "Hostname"}, {"address", "n1"}}, {{"type", "InternalIP"}, {"address", "10.0.0.7"}}}},
                           {"daemonEndpoints", {{"kubeletEndpoint", {{"Port", 10555}}}}}}}};
  EXPECT_EQ(cp::nodeApiEndpoint(node), "10.0.0.7:10555");
  node["status"].erase("daemonEndpoints");
  EXPECT_EQ(cp::nodeApiEndpoint(node), "10.0.0.7:10250");
  node["status"]["addresses"] = Json::array();
  EXPECT_EQ(cp::nodeApiEndpoint(node), "");
}

TEST(Metrics, FromSummary) {
  Json summary = Json::parse(R"({
    "node": {"nodeName": "n1", "cpu": {"time": "2026-11-25T12:00:00Z", "usageNanoCores": 250000000, "usageCoreNanoSeconds": 9},
             "memory": {"workingSetBytes": 2097152}},
    "pods": [
      {"podRef": {"name": "web", "namespace": "default", "uid": "u1"}, "cpu": {"time": "2026-11-25T12:00:00Z"},
       "containers": [{"name": "app", "cpu": {"usageNanoCores": 1000}, "memory": {"workingSetBytes": 4096}}]},
      {"podRef": {"name": "new", "namespace": "default", "uid": "u2"},
       "containers": [{"name": "app", "cpu": {"usageCoreNanoSeconds": 5}, "memory": {"workingSetBytes": 4096}}]}
    ]})");
  Json node = {{"metadata", {{"name", "n1"}, {"labels", {{"a", "b"}}}}}};
  auto nm = cp::nodeMetricsFromSummary(node, summary);
  ASSERT_TRUE(nm);
  EXPECT_EQ((*nm)["kind"], "NodeMetrics");
  EXPECT_EQ((*nm)["metadata"]["name"], "n1");
  EXPECT_EQ((*nm)["usage"]["cpu"], "250000000n");
  EXPECT_EQ((*nm)["usage"]["memory"], "2048Ki");
  auto pods = cp::podMetricsFromSummary(summary);
  ASSERT_EQ(pods.size(), 1u) << "the pod without a rate yet is left out";
  EXPECT_EQ(pods[0]["metadata"]["name"], "web");
  EXPECT_EQ(pods[0]["containers"][0]["usage"]["cpu"], "1000n");
  EXPECT_EQ(pods[0]["containers"][0]["usage"]["memory"], "4Ki");
  summary["node"]["cpu"].erase("usageNanoCores");
  EXPECT_FALSE(cp::nodeMetricsFromSummary(node, summary));
}
