// main() of `ferry-unpack`, the image store's unpacker (unpack_helper.h). One request per
// run; the reply is one JSON object on stdout, an error as {"error": {"code", "message"}}:
//   ferry-unpack layer LAYER TARGET_DIR   → {"sizeBytes": N}
//   ferry-unpack diff-id LAYER            → {"diffId": "sha256:..."}
//   ferry-unpack archive TAR DIR          → {"files": {"archive/path": "DIR/m0", ...}}
#include <cerrno>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/images/layer_unpacker.h"

namespace {

using json = nlohmann::json;

int reply(const json& doc, int status) {
  std::string text = doc.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  std::fwrite(text.data(), 1, text.size(), stdout);
  return std::fflush(stdout) == 0 ? status : 1;
}

int replyError(const ferry::Error& error) { return reply({{"error", {{"code", error.code}, {"message", error.message}}}}, 1); }

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  using namespace ferry::images;
  if (args.size() == 3 && args[0] == "layer") {
    auto unpacked = unpackLayer(args[1], args[2]);
    return unpacked ? reply({{"sizeBytes", unpacked->sizeBytes}}, 0) : replyError(unpacked.error());
  }
  if (args.size() == 2 && args[0] == "diff-id") {
    auto digest = uncompressedDigest(args[1]);
    return digest ? reply({{"diffId", *digest}}, 0) : replyError(digest.error());
  }
  if (args.size() == 3 && args[0] == "archive") {
    auto files = extractArchive(args[1], args[2]);
    return files ? reply({{"files", *files}}, 0) : replyError(files.error());
  }
  replyError(ferry::Error{EINVAL, "usage: ferry-unpack layer LAYER TARGET_DIR | diff-id LAYER | archive TAR DIR"});
  return 2;
}
