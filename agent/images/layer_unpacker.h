// Unpacks one image layer (a tar, plain, gzip or zstd) into a directory that overlayfs
// can use as a lowerdir. Layers are hostile input: nothing may land outside the target.
// The agent does not call these itself: they run in `ferry-unpack` (unpack_helper.h).
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "api/error.h"

namespace ferry::images {

struct UnpackedLayer {
  std::int64_t sizeBytes = 0;  // sum of regular file sizes
};

// Unpacks `layerPath` into `targetDir`, which must exist and be empty. Refused, with the
// entry named in the error: absolute paths, ".." components, writing through a symlink,
// relative symlinks that climb above the layer root, hard links to anything outside the
// layer, character and block devices. Absolute symlinks are kept: they are resolved in the
// container's root, never followed here. Whiteouts (".wh.NAME") become overlayfs whiteouts
// (a 0/0 character device made here, not taken from the archive) and ".wh..wh..opq" sets
// trusted.overlay.opaque=y. On failure the target may hold a partial tree: the caller
// unpacks into a temporary directory and removes it (see ImageStore).
Result<UnpackedLayer> unpackLayer(const std::string& layerPath, const std::string& targetDir);

// sha256 of the decompressed tar stream: the layer's diff id, as listed in the image
// config's rootfs.diff_ids.
Result<std::string> uncompressedDigest(const std::string& layerPath);

// Writes the regular files of an image archive (docker-archive / oci-archive, any
// compression) under `dir` with flat generated names (archive paths never become paths on
// disk) and returns archive path → file. Symlinks and hard links (docker save uses them for
// repeated layers) become aliases of the file they name; other entries are skipped.
Result<std::map<std::string, std::string>> extractArchive(const std::string& tarPath, const std::string& dir);

}  // namespace ferry::images
