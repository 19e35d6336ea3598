#include "agent/server/websocket.h"

#include "api/object.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cstring>

namespace ferry::agent {

std::string webSocketAccept(std::string_view clientKey) {
  std::string text = std::string(clientKey) + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  std::string out(4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), digest, SHA_DIGEST_LENGTH);
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::string encodeWsFrame(WsOpcode opcode, std::string_view payload, bool mask) {
  std::string out;
  out.reserve(payload.size() + 14);
  out += static_cast<char>(0x80 | static_cast<std::uint8_t>(opcode));
  std::uint8_t maskBit = mask ? 0x80 : 0;
  std::uint64_t size = payload.size();
  if (size < 126) {
    out += static_cast<char>(maskBit | size);
  } else if (size <= 0xffff) {
    out += static_cast<char>(maskBit | 126);
    out += static_cast<char>(size >> 8);
    out += static_cast<char>(size & 0xff);
  } else {
    out += static_cast<char>(maskBit | 127);
    for (int shift = 56; shift >= 0; shift -= 8) out += static_cast<char>((size >> shift) & 0xff);
  }
  if (!mask) {
    out.append(payload);
    return out;
  }
  unsigned char key[4];
  RAND_bytes(key, sizeof key);
  out.append(reinterpret_cast<const char*>(key), 4);
  for (std::size_t i = 0; i < payload.size(); ++i) out += static_cast<char>(payload[i] ^ key[i % 4]);
  return out;
}

Result<std::optional<WsMessage>> WsDecoder::next() {
  while (true) {
    if (buffer_.size() < 2) return std::optional<WsMessage>{};
    auto byte = [&](std::size_t i) { return static_cast<std::uint8_t>(buffer_[i]); };
    bool fin = byte(0) & 0x80;
    if (byte(0) & 0x70) return fail(EPROTO, "websocket: reserved bits set");
    auto opcode = static_cast<WsOpcode>(byte(0) & 0x0f);
    bool masked = byte(1) & 0x80;
    std::uint64_t size = byte(1) & 0x7f;
    std::size_t header = 2;
    if (size == 126) {
      if (buffer_.size() < 4) return std::optional<WsMessage>{};
      size = (std::uint64_t{byte(2)} << 8) | byte(3);
      header = 4;
    } else if (size == 127) {
      if (buffer_.size() < 10) return std::optional<WsMessage>{};
      size = 0;
      for (int i = 2; i < 10; ++i) size = (size << 8) | byte(static_cast<std::size_t>(i));
      header = 10;
    }
    bool control = static_cast<std::uint8_t>(opcode) >= 8;
    if (control && (!fin || size > 125)) return fail(EPROTO, "websocket: bad control frame");
    std::size_t already = partial_ ? partial_->payload.size() : 0;
    if (size > maxMessageBytes_ || already + size > maxMessageBytes_)
      return fail(EMSGSIZE, "websocket: message larger than " + std::to_string(maxMessageBytes_) + " bytes");
    if (masked) header += 4;
    if (buffer_.size() < header + size) return std::optional<WsMessage>{};
    std::string payload = buffer_.substr(header, size);
    if (masked) {
      const char* key = buffer_.data() + header - 4;
      for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(payload[i] ^ key[i % 4]);
    }
    buffer_.erase(0, header + size);

    if (control) return std::optional<WsMessage>{WsMessage{opcode, std::move(payload)}};
    if (opcode == WsOpcode::Continuation) {
      if (!partial_) return fail(EPROTO, "websocket: continuation frame without a message");
      partial_->payload += payload;
    } else if (opcode == WsOpcode::Text || opcode == WsOpcode::Binary) {
      if (partial_) return fail(EPROTO, "websocket: new message inside a fragmented one");
      partial_ = WsMessage{opcode, std::move(payload)};
    } else {
      return fail(EPROTO, "websocket: unknown opcode " + std::to_string(static_cast<int>(opcode)));
    }
    if (fin) {
      WsMessage done = std::move(*partial_);
      partial_.reset();
      return std::optional<WsMessage>{std::move(done)};
    }
  }
}

std::string chooseStreamProtocol(std::string_view offered) {
  bool v4 = false, v5 = false;
  while (!offered.empty()) {
    auto comma = offered.find(',');
    std::string_view one = offered.substr(0, comma);
    offered = comma == std::string_view::npos ? std::string_view() : offered.substr(comma + 1);
    while (!one.empty() && one.front() == ' ') one.remove_prefix(1);
    while (!one.empty() && one.back() == ' ') one.remove_suffix(1);
    if (one == kStreamProtocolV5) v5 = true;
    if (one == kStreamProtocolV4) v4 = true;
  }
  return v5 ? kStreamProtocolV5 : (v4 ? kStreamProtocolV4 : "");
}

std::string channelPayload(std::uint8_t channel, std::string_view data) {
  std::string out;
  out.reserve(data.size() + 1);
  out += static_cast<char>(channel);
  out.append(data);
  return out;
}

std::string execStatusJson(int exitCode) {
  if (exitCode == 0) return api::Json{{"metadata", api::Json::object()}, {"status", "Success"}}.dump();
  api::Json status = {
      {"metadata", api::Json::object()},
      {"status", "Failure"},
      {"message", "command terminated with non-zero exit code: exit status " + std::to_string(exitCode)},
      {"reason", "NonZeroExitCode"},
      {"details", {{"causes", api::Json::array({{{"reason", "ExitCode"}, {"message", std::to_string(exitCode)}}})}}},
  };
  return status.dump();
}

std::string execErrorStatusJson(const std::string& message) {
  return api::Json{{"metadata", api::Json::object()}, {"status", "Failure"}, {"message", message},
                   {"reason", "InternalError"}, {"code", 500}}
      .dump();
}

Result<TerminalSize> parseTerminalSize(std::string_view json) {
  auto parsed = api::Json::parse(json, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) return fail(EINVAL, "resize: not a JSON object");
  auto width = parsed.find("Width");
  auto height = parsed.find("Height");
  if (width == parsed.end() || !width->is_number_unsigned() || height == parsed.end() || !height->is_number_unsigned())
    return fail(EINVAL, "resize: Width and Height must be non-negative numbers");
  if (width->get<std::uint64_t>() > 0xffff || height->get<std::uint64_t>() > 0xffff)
    return fail(EINVAL, "resize: Width or Height too large");
  return TerminalSize{static_cast<unsigned short>(width->get<std::uint64_t>()),
                      static_cast<unsigned short>(height->get<std::uint64_t>())};
}

}  // namespace ferry::agent
