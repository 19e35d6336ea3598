// WebSocket (RFC 6455) as the agent's exec endpoint speaks it, plus the Kubernetes
// stream protocol on top (v4/v5.channel.k8s.io): every binary message starts with a
// channel byte — 0 stdin, 1 stdout, 2 stderr, 3 status (a metav1.Status as JSON),
// 4 terminal resize ({"Width":w,"Height":h}) — and v5 adds 255 "close channel N".
#pragma once

#include "api/error.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ferry::agent {

// The Sec-WebSocket-Accept value for a client's Sec-WebSocket-Key.
std::string webSocketAccept(std::string_view clientKey);

enum class WsOpcode : std::uint8_t { Continuation = 0, Text = 1, Binary = 2, Close = 8, Ping = 9, Pong = 10 };

struct WsMessage {
  WsOpcode opcode = WsOpcode::Binary;
  std::string payload;
};

// Encodes one unfragmented frame. Servers send unmasked frames; clients must mask.
std::string encodeWsFrame(WsOpcode opcode, std::string_view payload, bool mask = false);

// Reassembles messages from bytes as they arrive: unmasks, joins fragments, lets
// control frames through between fragments. Bad input (reserved bits, a control frame
// over 125 bytes or fragmented, a message over `maxMessageBytes`, a continuation
// without a start) is an error; the connection should then be closed.
class WsDecoder {
 public:
  explicit WsDecoder(std::size_t maxMessageBytes = 16u << 20) : maxMessageBytes_(maxMessageBytes) {}
  void feed(std::string_view bytes) { buffer_.append(bytes); }
  // The next complete message, nullopt when more bytes are needed.
  Result<std::optional<WsMessage>> next();

 private:
  std::size_t maxMessageBytes_;
  std::string buffer_;
  std::optional<WsMessage> partial_;  // a fragmented data message being joined
};

// The Kubernetes stream channels.
inline constexpr std::uint8_t kChannelStdin = 0;
inline constexpr std::uint8_t kChannelStdout = 1;
inline constexpr std::uint8_t kChannelStderr = 2;
inline constexpr std::uint8_t kChannelStatus = 3;
inline constexpr std::uint8_t kChannelResize = 4;
inline constexpr std::uint8_t kChannelClose = 255;  // v5: payload is the channel to close

inline constexpr const char* kStreamProtocolV5 = "v5.channel.k8s.io";
inline constexpr const char* kStreamProtocolV4 = "v4.channel.k8s.io";

// Picks the protocol from a Sec-WebSocket-Protocol header (comma-separated offers):
// v5 before v4; empty when neither is offered.
std::string chooseStreamProtocol(std::string_view offered);

// One channel message as a binary frame payload: the channel byte, then `data`.
std::string channelPayload(std::uint8_t channel, std::string_view data);

// The status message kubectl turns into its exit code: Success for 0, else a Failure
// with reason NonZeroExitCode and a cause {reason: ExitCode, message: "<code>"}.
std::string execStatusJson(int exitCode);
// A Failure status for an exec that could not run at all.
std::string execErrorStatusJson(const std::string& message);

struct TerminalSize {
  unsigned short width = 0;
  unsigned short height = 0;
};
// Parses a resize message {"Width":80,"Height":24}.
Result<TerminalSize> parseTerminalSize(std::string_view json);

}  // namespace ferry::agent
