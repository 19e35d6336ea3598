// The image store's unpacking runs in `ferry-unpack`, a small program of its own beside
// `ferry` (agent/images/unpack_main.cc over layer_unpacker.h). The agent then maps no
// libarchive (with libxml2, ICU, nettle, acl, bz2: ~1.4 MB of its resident memory, for
// work done once per image), and hostile layers are parsed in a process that holds nothing
// else of the node's.
#pragma once

#include <map>
#include <string>

#include "agent/images/layer_unpacker.h"
#include "api/error.h"

namespace ferry::images {

inline constexpr const char* kUnpackProgram = "ferry-unpack";

class UnpackHelper {
 public:
  // `program` empty: ferry-unpack beside the running executable.
  explicit UnpackHelper(std::string program = "");

  // As the functions of layer_unpacker.h, with their errors (code and message) passed back.
  Result<UnpackedLayer> unpackLayer(const std::string& layerPath, const std::string& targetDir) const;
  Result<std::string> uncompressedDigest(const std::string& layerPath) const;
  Result<std::map<std::string, std::string>> extractArchive(const std::string& tarPath, const std::string& dir) const;

  const std::string& program() const { return program_; }

 private:
  std::string program_;
};

}  // namespace ferry::images
