// Builds tar layers and OCI archives inside tests, with libarchive, so hostile inputs can
// be crafted exactly (names, link targets, device nodes) without any tool's sanitizing.
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/images/content_digest.h"

namespace ferry::images::testing {

struct TarEntry {
  enum Kind { File, Dir, Symlink, Hardlink, CharDevice, BlockDevice, Fifo } kind = File;
  std::string path;
  std::string content;  // File: data; Symlink/Hardlink: target
  int mode = 0644;
};

inline TarEntry file(std::string path, std::string content, int mode = 0644) {
  return {TarEntry::File, std::move(path), std::move(content), mode};
}
inline TarEntry dir(std::string path, int mode = 0755) { return {TarEntry::Dir, std::move(path), "", mode}; }
inline TarEntry symlink(std::string path, std::string target) { return {TarEntry::Symlink, std::move(path), std::move(target), 0777}; }
inline TarEntry hardlink(std::string path, std::string target) { return {TarEntry::Hardlink, std::move(path), std::move(target), 0644}; }

enum class Compression { None, Gzip, Zstd };

inline void writeTar(const std::string& path, const std::vector<TarEntry>& entries, Compression compression = Compression::None) {
  struct archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (compression == Compression::Gzip) archive_write_add_filter_gzip(a);
  if (compression == Compression::Zstd) archive_write_add_filter_zstd(a);
  if (archive_write_open_filename(a, path.c_str()) != ARCHIVE_OK) throw std::runtime_error(archive_error_string(a));
  for (const auto& e : entries) {
    struct archive_entry* entry = archive_entry_new();
    archive_entry_set_pathname(entry, e.path.c_str());
    archive_entry_set_perm(entry, e.mode);
    archive_entry_set_mtime(entry, 1000000, 0);
    switch (e.kind) {
      case TarEntry::File:
        archive_entry_set_filetype(entry, AE_IFREG);
        archive_entry_set_size(entry, static_cast<la_int64_t>(e.content.size()));
        break;
      case TarEntry::Dir: archive_entry_set_filetype(entry, AE_IFDIR); break;
      case TarEntry::Symlink:
        archive_entry_set_filetype(entry, AE_IFLNK);
        archive_entry_set_symlink(entry, e.content.c_str());
        break;
      case TarEntry::Hardlink:
        archive_entry_set_filetype(entry, AE_IFREG);
        archive_entry_set_hardlink(entry, e.content.c_str());
        break;
      case TarEntry::CharDevice:
        archive_entry_set_filetype(entry, AE_IFCHR);
        archive_entry_set_rdevmajor(entry, 1);
        archive_entry_set_rdevminor(entry, 3);
        break;
      case TarEntry::BlockDevice:
        archive_entry_set_filetype(entry, AE_IFBLK);
        archive_entry_set_rdevmajor(entry, 8);
        archive_entry_set_rdevminor(entry, 0);
        break;
      case TarEntry::Fifo: archive_entry_set_filetype(entry, AE_IFIFO); break;
    }
    archive_write_header(a, entry);
    if (e.kind == TarEntry::File && !e.content.empty()) archive_write_data(a, e.content.data(), e.content.size());
    archive_entry_free(entry);
  }
  archive_write_close(a);
  archive_write_free(a);
}

inline std::string readAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Writes an oci-archive with one image made of `layers` (each a list of entries, gzip or
// zstd as `compression` says), named `reference`. Returns the manifest digest.
inline std::string writeOciArchive(const std::string& path, const std::string& workDir,
                                   const std::vector<std::vector<TarEntry>>& layers, const std::string& reference,
                                   const std::vector<std::string>& cmd = {"sh"},
                                   Compression compression = Compression::Gzip) {
  using json = nlohmann::json;
  std::vector<std::pair<std::string, std::string>> blobs;  // digest, content
  json diffIds = json::array();
  json layerDescriptors = json::array();
  int n = 0;
  for (const auto& layer : layers) {
    std::string plain = workDir + "/l" + std::to_string(n) + ".tar";
    const bool zstd = compression == Compression::Zstd;
    std::string gz = workDir + "/l" + std::to_string(n) + (zstd ? ".tar.zst" : ".tar.gz");
    ++n;
    writeTar(plain, layer);
    writeTar(gz, layer, zstd ? Compression::Zstd : Compression::Gzip);
    diffIds.push_back(digestOf(readAll(plain)));
    std::string content = readAll(gz);
    std::string digest = digestOf(content);
    layerDescriptors.push_back({{"mediaType", zstd ? "application/vnd.oci.image.layer.v1.tar+zstd" : "application/vnd.oci.image.layer.v1.tar+gzip"},
                                {"digest", digest}, {"size", content.size()}});
    blobs.push_back({digest, content});
  }
  json config = {{"architecture", "amd64"}, {"os", "linux"}, {"config", {{"Cmd", cmd}, {"Env", {"PATH=/bin"}}}},
                 {"rootfs", {{"type", "layers"}, {"diff_ids", diffIds}}}};
  std::string configText = config.dump();
  blobs.push_back({digestOf(configText), configText});
  json manifest = {{"schemaVersion", 2},
                   {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                   {"config", {{"mediaType", "application/vnd.oci.image.config.v1+json"}, {"digest", digestOf(configText)}, {"size", configText.size()}}},
                   {"layers", layerDescriptors}};
  std::string manifestText = manifest.dump();
  std::string manifestDigest = digestOf(manifestText);
  blobs.push_back({manifestDigest, manifestText});
  json index = {{"schemaVersion", 2},
                {"manifests", {{{"mediaType", "application/vnd.oci.image.manifest.v1+json"}, {"digest", manifestDigest},
                                {"size", manifestText.size()}, {"annotations", {{"io.containerd.image.name", reference}}}}}}};
  std::vector<TarEntry> entries = {file("oci-layout", R"({"imageLayoutVersion":"1.0.0"})"), file("index.json", index.dump()),
                                   dir("blobs"), dir("blobs/sha256")};
  for (const auto& [digest, content] : blobs) entries.push_back(file("blobs/sha256/" + digestHex(digest), content));
  writeTar(path, entries);
  return manifestDigest;
}

inline std::string makeTempDir(const std::string& name) {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/ferry-" + name + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) throw std::runtime_error("mkdtemp");
  return buf.data();
}

}  // namespace ferry::images::testing
