#include "agent/images/image_store.h"

#include <fcntl.h>
#include <ftw.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <tuple>

#include "agent/images/content_digest.h"
#include "agent/images/registry_client.h"
#include "agent/images/unpack_helper.h"

namespace ferry::images {

namespace fs = std::filesystem;
using json = nlohmann::json;

const char* imageFailureReasonName(ImageFailureReason reason) {
  switch (reason) {
    case ImageFailureReason::InvalidImageName: return "InvalidImageName";
    case ImageFailureReason::ErrImageNeverPull: return "ErrImageNeverPull";
    case ImageFailureReason::ErrImagePull: return "ErrImagePull";
  }
  return "ErrImagePull";
}

namespace {

const char* kOciIndex = "application/vnd.oci.image.index.v1+json";
const char* kDockerList = "application/vnd.docker.distribution.manifest.list.v2+json";

std::int64_t nowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string randomSuffix() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{:016x}", rng());
}

Result<std::string> readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return failErrno("open " + path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

Status writeFileAtomically(const std::string& path, const std::string& content, bool durable = true) {
  std::string tmp = path + ".tmp-" + randomSuffix();
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return failErrno("create " + tmp);
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return failErrno("write " + tmp, err);
    }
    done += static_cast<size_t>(n);
  }
  if ((durable && ::fsync(fd) < 0) || ::close(fd) < 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return failErrno("sync " + tmp, err);
  }
  if (::rename(tmp.c_str(), path.c_str()) < 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return failErrno("rename " + tmp, err);
  }
  return {};
}

// Removes a tree without following symlinks; read-only directories (a layer may have
// them) are opened up first when running unprivileged.
void removeTree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (!ec) return;
  ::nftw(
      path.c_str(),
      [](const char* p, const struct stat* st, int type, struct FTW*) {
        if (type == FTW_D || type == FTW_DNR) ::chmod(p, (st->st_mode & 07777) | S_IRWXU);
        return 0;
      },
      32, FTW_PHYS);
  fs::remove_all(path, ec);
}

std::vector<std::string> stringList(const json& o, const char* key) {
  std::vector<std::string> out;
  auto it = o.find(key);
  if (it == o.end() || !it->is_array()) return out;
  for (const auto& v : *it)
    if (v.is_string()) out.push_back(v.get<std::string>());
  return out;
}

std::string stringField(const json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// An exclusive or shared flock on the store's lock file, for the index's read-modify-write.
class StoreLock {
 public:
  StoreLock(const std::string& path, bool exclusive) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ >= 0)
      while (::flock(fd_, exclusive ? LOCK_EX : LOCK_SH) < 0 && errno == EINTR) {
      }
  }
  ~StoreLock() {
    if (fd_ >= 0) ::close(fd_);
  }

 private:
  int fd_ = -1;
};

struct Descriptor {
  std::string mediaType;
  std::string digest;
  std::int64_t size = -1;
};

Result<Descriptor> parseDescriptor(const json& d, const std::string& what) {
  if (!d.is_object()) return fail(Error::invalid(what + ": not an object"));
  Descriptor out{stringField(d, "mediaType"), stringField(d, "digest"), -1};
  if (!isSha256Digest(out.digest)) return fail(Error::invalid(fmt::format("{}: digest \"{}\" is not sha256", what, out.digest)));
  if (d.contains("size") && d["size"].is_number_integer()) out.size = d["size"].get<std::int64_t>();
  return out;
}

bool isIndexMediaType(const std::string& mediaType, const json& doc) {
  return mediaType == kOciIndex || mediaType == kDockerList || (mediaType.empty() && doc.contains("manifests"));
}

// The linux/amd64 entry of an image index.
Result<Descriptor> selectPlatform(const json& index) {
  if (!index.contains("manifests") || !index["manifests"].is_array()) return fail(Error::invalid("index: no manifests"));
  for (const auto& m : index["manifests"]) {
    const json platform = m.is_object() && m.contains("platform") ? m["platform"] : json::object();
    if (stringField(platform, "os") == "linux" && stringField(platform, "architecture") == "amd64")
      return parseDescriptor(m, "index entry");
  }
  return fail(Error{ENOENT, "index: no linux/amd64 image"});
}

struct ParsedManifest {
  Descriptor config;
  std::vector<Descriptor> layers;
};

Result<ParsedManifest> parseManifest(const json& doc) {
  if (!doc.is_object() || !doc.contains("config")) return fail(Error::invalid("manifest: no config (schema 1 manifests are not supported)"));
  ParsedManifest m;
  auto config = parseDescriptor(doc["config"], "manifest config");
  if (!config) return fail(config.error());
  m.config = *config;
  if (!doc.contains("layers") || !doc["layers"].is_array()) return fail(Error::invalid("manifest: no layers"));
  size_t i = 0;
  for (const auto& l : doc["layers"]) {
    auto layer = parseDescriptor(l, fmt::format("manifest layers[{}]", i++));
    if (!layer) return fail(layer.error());
    const std::string& t = layer->mediaType;
    bool known = t.empty() || t.find("tar") != std::string::npos;
    if (!known || t.find("nondistributable") != std::string::npos || t.find("foreign") != std::string::npos)
      return fail(Error::invalid(fmt::format("manifest layers[{}]: unsupported media type \"{}\"", i - 1, t)));
    m.layers.push_back(*layer);
  }
  return m;
}

struct ParsedConfig {
  ImageConfig config;
  std::vector<std::string> diffIds;
};

Result<ParsedConfig> parseImageConfig(const std::string& text) {
  json doc = json::parse(text, nullptr, false);
  if (!doc.is_object()) return fail(Error::invalid("image config: not a JSON object"));
  ParsedConfig out;
  if (doc.contains("config") && doc["config"].is_object()) {
    const json& c = doc["config"];
    out.config.entrypoint = stringList(c, "Entrypoint");
    out.config.cmd = stringList(c, "Cmd");
    out.config.env = stringList(c, "Env");
    out.config.workingDir = stringField(c, "WorkingDir");
    out.config.user = stringField(c, "User");
  }
  if (!doc.contains("rootfs") || !doc["rootfs"].is_object()) return fail(Error::invalid("image config: no rootfs"));
  out.diffIds = stringList(doc["rootfs"], "diff_ids");
  for (const auto& d : out.diffIds)
    if (!isSha256Digest(d)) return fail(Error::invalid(fmt::format("image config: rootfs.diff_ids entry \"{}\" is not sha256", d)));
  return out;
}

json configToJson(const ImageConfig& c) {
  return json{{"entrypoint", c.entrypoint}, {"cmd", c.cmd}, {"env", c.env}, {"workingDir", c.workingDir}, {"user", c.user}};
}

ImageConfig configFromJson(const json& j) {
  ImageConfig c;
  c.entrypoint = stringList(j, "entrypoint");
  c.cmd = stringList(j, "cmd");
  c.env = stringList(j, "env");
  c.workingDir = stringField(j, "workingDir");
  c.user = stringField(j, "user");
  return c;
}

// A layer blob on disk with the diff id it must have once decompressed.
struct LayerSource {
  std::string path;
  std::string diffId;
};

}  // namespace

// Store layout under <dataDir>/images:
//   index.json          images by id, and references → {id, digest}
//   lock                flock for index read-modify-write (agent and `ferry image` share it)
//   blobs/sha256/HEX    manifests and configs, verified
//   layers/HEX/rootfs   one unpacked layer, HEX = its diff id; layers/HEX/size
//   tmp/                downloads and unpacks in progress; renamed into place when whole
class ImageStore::Impl {
 public:
  Impl(std::string root, RegistryOptions options, std::string unpackProgram)
      : root_(std::move(root)), options_(std::move(options)), unpacker_(std::move(unpackProgram)) {}

  Status init() {
    for (const char* d : {"", "/blobs", "/blobs/sha256", "/layers", "/tmp"}) {
      std::error_code ec;
      fs::create_directories(root_ + d, ec);
      if (ec) return fail(Error{ec.value(), fmt::format("create {}{}: {}", root_, d, ec.message())});
    }
    // Leftovers of a process that died mid-pull.
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(root_ + "/tmp", ec)) removeTree(e.path().string());
    if (!options_.credentialFile.empty()) {
      auto creds = loadDockerConfigFile(options_.credentialFile);
      if (!creds) return fail(std::move(creds.error()).wrap("registry credential file"));
      nodeCredentials_ = std::move(*creds);
    }
    return {};
  }

  std::string root_;
  RegistryOptions options_;
  UnpackHelper unpacker_;
  CredentialSet nodeCredentials_;

  std::string lockPath() const { return root_ + "/lock"; }
  std::string indexPath() const { return root_ + "/index.json"; }
  std::string blobPath(const std::string& digest) const { return root_ + "/blobs/sha256/" + digestHex(digest); }
  std::string layerDir(const std::string& diffId) const { return root_ + "/layers/" + digestHex(diffId); }
  std::string tmpPath(const std::string& prefix) const { return root_ + "/tmp/" + prefix + "-" + randomSuffix(); }

  // --- index ---------------------------------------------------------------------------

  json loadIndex() const {
    auto text = readFile(indexPath());
    json doc = text ? json::parse(*text, nullptr, false) : json();
    if (!doc.is_object()) doc = json::object();
    if (!doc.contains("images") || !doc["images"].is_object()) doc["images"] = json::object();
    if (!doc.contains("references") || !doc["references"].is_object()) doc["references"] = json::object();
    return doc;
  }

  Status saveIndex(const json& doc) const { return writeFileAtomically(indexPath(), doc.dump(1)); }

  Image imageFromRecord(const json& index, const std::string& id) const {
    const json& rec = index["images"][id];
    Image image;
    image.id = id;
    image.config = configFromJson(rec.value("config", json::object()));
    image.sizeBytes = rec.value("size", std::int64_t{0});
    image.lastUsedUnixSeconds = rec.value("lastUsed", std::int64_t{0});
    for (const auto& diffId : stringList(rec, "layers")) image.layerDirs.push_back(layerDir(diffId) + "/rootfs");
    for (auto it = index["references"].begin(); it != index["references"].end(); ++it)
      if (it.value().value("id", "") == id) image.references.push_back(it.key());
    auto repoDigests = stringList(rec, "repoDigests");
    if (!repoDigests.empty()) image.digest = repoDigests.front().substr(repoDigests.front().find('@') + 1);
    return image;
  }

  // The image id a reference names in `index`, or empty.
  std::string resolve(const json& index, const std::string& reference, std::string* digest) const {
    if (isSha256Digest(reference)) return index["images"].contains(reference) ? reference : "";
    auto ref = parseImageReference(reference);
    if (!ref) return "";
    if (!ref->digest.empty()) {
      std::string wanted = ref->name() + "@" + ref->digest;
      for (auto it = index["images"].begin(); it != index["images"].end(); ++it) {
        auto repoDigests = stringList(it.value(), "repoDigests");
        if (std::find(repoDigests.begin(), repoDigests.end(), wanted) != repoDigests.end()) {
          if (digest) *digest = ref->digest;
          return it.key();
        }
      }
      return "";
    }
    auto it = index["references"].find(ref->normalized());
    if (it == index["references"].end()) return "";
    std::string id = it.value().value("id", "");
    if (!index["images"].contains(id)) return "";
    if (digest) *digest = it.value().value("digest", "");
    return id;
  }

  Result<Image> find(const std::string& reference) {
    StoreLock lock(lockPath(), false);
    json index = loadIndex();
    std::string digest;
    std::string id = resolve(index, reference, &digest);
    if (id.empty()) return fail(Error{ENOENT, fmt::format("image \"{}\" not present", reference)});
    Image image = imageFromRecord(index, id);
    if (!digest.empty()) image.digest = digest;
    return image;
  }

  // --- layers and registration ---------------------------------------------------------

  // Makes layers/<diffId> from a blob, unless it is there already. A bad layer leaves
  // nothing: the unpack happens in tmp/ and only a whole, verified layer is renamed in.
  Result<std::int64_t> ensureLayer(const LayerSource& source) {
    std::string finalDir = layerDir(source.diffId);
    if (::access(finalDir.c_str(), F_OK) == 0) return std::int64_t{0};
    auto actual = unpacker_.uncompressedDigest(source.path);
    if (!actual) return fail(actual.error());
    if (*actual != source.diffId)
      return fail(Error::invalid(fmt::format("layer content has diff id {}, the image config says {}", *actual, source.diffId)));
    std::string work = tmpPath("layer");
    if (::mkdir(work.c_str(), 0700) < 0 || ::mkdir((work + "/rootfs").c_str(), 0755) < 0) {
      int err = errno;
      removeTree(work);
      return failErrno("create " + work, err);
    }
    auto unpacked = unpacker_.unpackLayer(source.path, work + "/rootfs");
    if (!unpacked) {
      removeTree(work);
      return fail(unpacked.error());
    }
    if (auto s = writeFileAtomically(work + "/size", std::to_string(unpacked->sizeBytes)); !s) {
      removeTree(work);
      return fail(s.error());
    }
    ::chmod(work.c_str(), 0755);
    if (::rename(work.c_str(), finalDir.c_str()) < 0) {
      int err = errno;
      removeTree(work);
      // Another pull made the same layer meanwhile: theirs is as good as ours.
      if (err != EEXIST && err != ENOTEMPTY) return failErrno("rename layer into " + finalDir, err);
    }
    return unpacked->sizeBytes;
  }

  std::int64_t layerSize(const std::string& diffId) const {
    auto text = readFile(layerDir(diffId) + "/size");
    if (!text) return 0;
    try {
      return std::stoll(*text);
    } catch (...) {
      return 0;
    }
  }

  Status storeBlob(const std::string& digest, const std::string& content) {
    if (digestOf(content) != digest) return fail(Error::invalid(fmt::format("blob {}: content does not match its digest", digest)));
    if (::access(blobPath(digest).c_str(), F_OK) == 0) return {};
    return writeFileAtomically(blobPath(digest), content);
  }

  // Unpacks whatever layers are missing, then records the image under its references.
  Result<Image> install(const std::string& configDigest, const std::string& configText,
                        const std::vector<LayerSource>& layers, const std::vector<std::string>& references,
                        const std::string& repoDigest /* "name@sha256:..." or empty */) {
    auto config = parseImageConfig(configText);
    if (!config) return fail(config.error());
    if (config->diffIds.size() != layers.size())
      return fail(Error::invalid(fmt::format("image config lists {} layers, the manifest {}", config->diffIds.size(), layers.size())));
    for (size_t i = 0; i < layers.size(); ++i) {
      auto made = ensureLayer({layers[i].path, config->diffIds[i]});
      if (!made) return fail(std::move(made.error()).wrap(fmt::format("layer {}", i)));
    }
    if (auto s = storeBlob(configDigest, configText); !s) return fail(s.error());
    return registerImage(configDigest, *config, references, repoDigest);
  }

  Result<Image> registerImage(const std::string& id, const ParsedConfig& config, const std::vector<std::string>& references,
                              const std::string& repoDigest) {
    StoreLock lock(lockPath(), true);
    json index = loadIndex();
    std::int64_t size = 0;
    for (const auto& d : config.diffIds) {
      // A concurrent GC may have taken a layer this image needs; the caller retries the pull.
      if (::access(layerDir(d).c_str(), F_OK) != 0) return fail(Error{EAGAIN, fmt::format("layer {} vanished during the pull", d)});
      size += layerSize(d);
    }
    json& rec = index["images"][id];
    rec["layers"] = config.diffIds;
    rec["config"] = configToJson(config.config);
    rec["size"] = size;
    rec["lastUsed"] = nowSeconds();
    auto repoDigests = stringList(rec, "repoDigests");
    if (!repoDigest.empty() && std::find(repoDigests.begin(), repoDigests.end(), repoDigest) == repoDigests.end())
      repoDigests.insert(repoDigests.begin(), repoDigest);
    rec["repoDigests"] = repoDigests;
    std::string digest = repoDigest.empty() ? "" : repoDigest.substr(repoDigest.find('@') + 1);
    // An image whose tag moves here stays, unnamed: a running container may still use its
    // layers. Image GC, which knows what is in use, removes it later.
    for (const auto& r : references) index["references"][r] = json{{"id", id}, {"digest", digest}};
    if (auto s = saveIndex(index); !s) return fail(s.error());
    Image image = imageFromRecord(index, id);
    if (!digest.empty()) image.digest = digest;
    return image;
  }

  void dropIfUnreferenced(json& index, const std::string& id) {
    for (auto it = index["references"].begin(); it != index["references"].end(); ++it)
      if (it.value().value("id", "") == id) return;
    index["images"].erase(id);
  }

  // Deletes layer directories no image record uses. Called with the lock held.
  void removeUnusedLayers(const json& index) {
    std::set<std::string> used;
    for (auto it = index["images"].begin(); it != index["images"].end(); ++it)
      for (const auto& d : stringList(it.value(), "layers")) used.insert(digestHex(d));
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(root_ + "/layers", ec)) {
      std::string name = e.path().filename().string();
      if (used.count(name)) continue;
      std::string doomed = tmpPath("remove");
      if (::rename(e.path().c_str(), doomed.c_str()) == 0) removeTree(doomed);
    }
  }

  // --- pull --------------------------------------------------------------------------

  Result<Image> pull(const std::string& reference, const CredentialSet& secrets, PullStats* stats) {
    PullStats local;
    PullStats& st = stats ? *stats : local;
    auto ref = parseImageReference(reference);
    if (!ref) return fail(ref.error());
    std::string what = "pull " + ref->normalized();
    // A digest names immutable content: when present, there is nothing to ask.
    if (!ref->digest.empty()) {
      if (auto found = find(ref->normalized())) return found;
    }
    CredentialSet credentials = secrets;
    credentials.append(nodeCredentials_);
    RegistryClient client(options_, *ref, credentials.lookup(ref->registry, ref->repository));

    // Unchanged since the last pull (same manifest digest): only this HEAD goes out.
    std::string localDigest;
    std::string localId;
    {
      StoreLock lock(lockPath(), false);
      json index = loadIndex();
      localId = resolve(index, ref->normalized(), &localDigest);
    }
    if (ref->digest.empty() && !localId.empty() && !localDigest.empty()) {
      ++st.manifestRequests;
      auto remote = client.manifestDigest(ref->tag);
      if (!remote) return fail(std::move(remote.error()).wrap(what));
      if (*remote == localDigest) {
        touch(localId);
        return find(ref->normalized());
      }
    }

    ++st.manifestRequests;
    auto top = client.fetchManifest(ref->manifestSelector());
    if (!top) return fail(std::move(top.error()).wrap(what));
    std::string repoDigest = top->digest;
    json doc = json::parse(top->body, nullptr, false);
    if (isIndexMediaType(top->mediaType, doc)) {
      auto entry = selectPlatform(doc);
      if (!entry) return fail(std::move(entry.error()).wrap(what));
      ++st.manifestRequests;
      auto manifest = client.fetchManifest(entry->digest);
      if (!manifest) return fail(std::move(manifest.error()).wrap(what));
      doc = json::parse(manifest->body, nullptr, false);
    }
    auto manifest = parseManifest(doc);
    if (!manifest) return fail(std::move(manifest.error()).wrap(what));

    // The config is small; it names the layers' diff ids, which say which layers we have.
    std::string configText;
    if (auto stored = readFile(blobPath(manifest->config.digest)); stored && digestOf(*stored) == manifest->config.digest) {
      configText = *stored;
    } else {
      std::string tmp = tmpPath("config");
      auto s = client.fetchBlob(manifest->config.digest, manifest->config.size, tmp);
      if (s) {
        ++st.blobsDownloaded;
        auto text = readFile(tmp);
        if (text) configText = *text;
      }
      ::unlink(tmp.c_str());
      if (!s) return fail(std::move(s.error()).wrap(what + ": config"));
    }
    auto config = parseImageConfig(configText);
    if (!config) return fail(std::move(config.error()).wrap(what));
    if (config->diffIds.size() != manifest->layers.size())
      return fail(Error::invalid(fmt::format("{}: config lists {} layers, the manifest {}", what, config->diffIds.size(),
                                             manifest->layers.size())));

    std::vector<LayerSource> sources;
    std::vector<std::string> downloaded;
    auto cleanup = [&] {
      for (const auto& p : downloaded) ::unlink(p.c_str());
    };
    for (size_t i = 0; i < manifest->layers.size(); ++i) {
      const std::string& diffId = config->diffIds[i];
      if (::access(layerDir(diffId).c_str(), F_OK) == 0) {
        sources.push_back({"", diffId});
        continue;
      }
      std::string tmp = tmpPath("blob");
      downloaded.push_back(tmp);
      if (auto s = client.fetchBlob(manifest->layers[i].digest, manifest->layers[i].size, tmp); !s) {
        cleanup();
        return fail(std::move(s.error()).wrap(fmt::format("{}: layer {}", what, i)));
      }
      ++st.blobsDownloaded;
      st.bytesDownloaded += manifest->layers[i].size;
      sources.push_back({tmp, diffId});
    }
    std::vector<std::string> references;
    if (!ref->tag.empty()) {
      ImageReference tagged = *ref;
      tagged.digest.clear();
      references.push_back(tagged.normalized());
    }
    auto image = install(manifest->config.digest, configText, sources, references, ref->name() + "@" + repoDigest);
    cleanup();
    if (!image) return fail(std::move(image.error()).wrap(what));
    image->digest = repoDigest;
    return image;
  }

  // Called on every container start: cheap when recent, and not synced to disk (a lost
  // last-used time only makes GC order slightly less exact).
  void touch(const std::string& id) {
    StoreLock lock(lockPath(), true);
    json index = loadIndex();
    if (!index["images"].contains(id)) return;
    std::int64_t now = nowSeconds();
    if (index["images"][id].value("lastUsed", std::int64_t{0}) + 60 > now) return;
    index["images"][id]["lastUsed"] = now;
    (void)writeFileAtomically(indexPath(), index.dump(1), /*durable=*/false);
  }

  // --- import ------------------------------------------------------------------------

  Result<std::vector<Image>> importArchive(const std::string& tarPath, const std::string& extraReference);

  Status remove(const std::string& reference) {
    StoreLock lock(lockPath(), true);
    json index = loadIndex();
    std::string id = resolve(index, reference, nullptr);
    if (id.empty()) return fail(Error{ENOENT, fmt::format("image \"{}\" not present", reference)});
    auto ref = parseImageReference(reference);
    bool byTag = ref && ref->digest.empty() && !isSha256Digest(reference);
    if (byTag) {
      index["references"].erase(ref->normalized());
      dropIfUnreferenced(index, id);
    } else {
      for (auto it = index["references"].begin(); it != index["references"].end();) {
        if (it.value().value("id", "") == id) it = index["references"].erase(it);
        else ++it;
      }
      index["images"].erase(id);
    }
    if (auto s = saveIndex(index); !s) return s;
    removeUnusedLayers(index);
    return {};
  }

  std::vector<Image> list() {
    StoreLock lock(lockPath(), false);
    json index = loadIndex();
    std::vector<Image> out;
    for (auto it = index["images"].begin(); it != index["images"].end(); ++it) out.push_back(imageFromRecord(index, it.key()));
    return out;
  }

  std::uint64_t storeBytes() {
    std::uint64_t total = 0;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(root_ + "/layers", ec)) total += static_cast<std::uint64_t>(layerSize("sha256:" + e.path().filename().string()));
    return total;
  }

  Status garbageCollect(std::uint64_t high, std::uint64_t low, const std::set<std::string>& inUse) {
    if (storeBytes() <= high) return {};
    StoreLock lock(lockPath(), true);
    auto removed = removeUnusedImages(inUse, std::numeric_limits<std::int64_t>::max(), [&] { return storeBytes() <= low; });
    if (!removed) return fail(removed.error());
    if (storeBytes() > low) return fail(Error{ENOSPC, fmt::format("image GC: store still holds {} bytes (images in use)", storeBytes())});
    return {};
  }

  struct FsUsage {
    std::uint64_t capacity = 0, available = 0;
    // As the kubelet rounds it: 100 - available * 100 / capacity.
    int percent() const { return capacity == 0 ? 0 : 100 - static_cast<int>(available * 100 / capacity); }
  };

  Result<FsUsage> fsUsage() const {
    struct statvfs st {};
    if (::statvfs(root_.c_str(), &st) != 0) return failErrno("statvfs " + root_);
    return FsUsage{static_cast<std::uint64_t>(st.f_blocks) * st.f_frsize, static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize};
  }

  Result<ImageGcReport> garbageCollect(const ImageGcPolicy& policy, const std::set<std::string>& inUse) {
    ImageGcReport report;
    auto before = fsUsage();
    if (!before) return fail(before.error());
    report.usagePercentBefore = report.usagePercentAfter = before->percent();
    if (before->percent() < policy.highThresholdPercent) return report;
    report.triggered = true;
    // Free down to the low threshold: available >= capacity * (100 - low) / 100.
    std::uint64_t wantAvailable = before->capacity / 100 * static_cast<std::uint64_t>(100 - policy.lowThresholdPercent);
    std::set<std::string> used = inUse;
    for (const auto& r : inUse)
      if (auto ref = parseImageReference(r)) used.insert(ref->normalized());
    std::uint64_t available = before->available;
    StoreLock lock(lockPath(), true);
    auto removed = removeUnusedImages(used, nowSeconds() - policy.minimumAge.count(), [&] {
      if (auto now = fsUsage()) available = now->available;
      return available >= wantAvailable;
    });
    if (!removed) return fail(removed.error());
    report.removed = std::move(*removed);
    auto after = fsUsage();
    if (after) {
      report.usagePercentAfter = after->percent();
      available = after->available;
    }
    if (available < wantAvailable)
      report.shortfall = (fmt::format("image GC: wanted {} bytes free ({}% used at most), {} free after removing {} "
                                            "unused image(s); the rest is in use or used within {}s",
                                            wantAvailable, policy.lowThresholdPercent, available, report.removed.size(),
                                            policy.minimumAge.count()));
    return report;
  }

  // Removes images not in `inUse` and last used at or before `usedBefore` (unix seconds), least
  // recently used first, until `enough()`. Called with the lock held.
  Result<std::vector<std::string>> removeUnusedImages(const std::set<std::string>& inUse, std::int64_t usedBefore,
                                                      const std::function<bool()>& enough) {
    json index = loadIndex();
    std::vector<std::tuple<std::int64_t, std::string, std::string>> candidates;  // (last used, id, name)
    for (auto it = index["images"].begin(); it != index["images"].end(); ++it) {
      Image image = imageFromRecord(index, it.key());
      bool used = inUse.count(image.id) > 0;
      for (const auto& r : image.references) used |= inUse.count(r) > 0;
      for (const auto& r : stringList(it.value(), "repoDigests")) used |= inUse.count(r) > 0;
      if (!used && image.lastUsedUnixSeconds <= usedBefore)
        candidates.emplace_back(image.lastUsedUnixSeconds, image.id, image.references.empty() ? image.id : image.references.front());
    }
    std::sort(candidates.begin(), candidates.end());
    std::vector<std::string> removed;
    for (const auto& [lastUsed, id, name] : candidates) {
      if (enough()) break;
      for (auto it = index["references"].begin(); it != index["references"].end();) {
        if (it.value().value("id", "") == id) it = index["references"].erase(it);
        else ++it;
      }
      index["images"].erase(id);
      if (auto s = saveIndex(index); !s) return fail(s.error());
      removeUnusedLayers(index);
      removed.push_back(name);
    }
    return removed;
  }
};

// --- archive import --------------------------------------------------------------------

namespace {

// The members of an image archive, written under a private directory. Only regular files
// are written; symlinks (docker save uses them for repeated layers) become aliases.
struct ExtractedArchive {
  std::string dir;
  std::map<std::string, std::string> files;  // archive path → file on disk

  Result<std::string> path(const std::string& member) const {
    std::string key = member;
    while (key.rfind("./", 0) == 0) key = key.substr(2);
    auto it = files.find(key);
    if (it == files.end()) return fail(Error{ENOENT, fmt::format("archive has no member \"{}\"", member)});
    return it->second;
  }
};

Result<json> readJsonMember(const ExtractedArchive& archive, const std::string& member) {
  auto path = archive.path(member);
  if (!path) return fail(path.error());
  auto text = readFile(*path);
  if (!text) return fail(text.error());
  json doc = json::parse(*text, nullptr, false);
  if (doc.is_discarded()) return fail(Error::invalid(member + ": not JSON"));
  return doc;
}

// Verified content of an OCI layout blob.
Result<std::string> readOciBlob(const ExtractedArchive& archive, const std::string& digest) {
  if (!isSha256Digest(digest)) return fail(Error::invalid(fmt::format("digest \"{}\" is not sha256", digest)));
  auto path = archive.path("blobs/sha256/" + digestHex(digest));
  if (!path) return fail(path.error());
  auto text = readFile(*path);
  if (!text) return fail(text.error());
  if (digestOf(*text) != digest) return fail(Error::invalid(fmt::format("blob {}: content does not match its digest", digest)));
  return text;
}

// A reference named in an archive: full references are kept; a bare tag ("1", the OCI
// convention for ref.name) names nothing by itself.
std::string archiveReference(const std::string& name) {
  if (name.find_first_of("/:") == std::string::npos && name.find("@") == std::string::npos) return "";
  auto ref = parseImageReference(name);
  return ref ? ref->normalized() : "";
}

}  // namespace

Result<std::vector<Image>> ImageStore::Impl::importArchive(const std::string& tarPath, const std::string& extraReference) {
  std::string extra;
  if (!extraReference.empty()) {
    auto ref = parseImageReference(extraReference);
    if (!ref) return fail(ref.error());
    extra = ref->normalized();
  }
  std::string work = tmpPath("import");
  if (::mkdir(work.c_str(), 0700) < 0) return failErrno("create " + work);
  struct Cleanup {
    std::string dir;
    ~Cleanup() { removeTree(dir); }
  } cleanup{work};
  auto members = unpacker_.extractArchive(tarPath, work);
  if (!members) return fail(std::move(members.error()).wrap("import " + tarPath));
  ExtractedArchive archive{work, std::move(*members)};
  std::vector<Image> images;
  auto withExtra = [&](std::vector<std::string> refs) {
    if (!extra.empty() && std::find(refs.begin(), refs.end(), extra) == refs.end()) refs.push_back(extra);
    return refs;
  };

  if (archive.files.count("index.json") && archive.files.count("oci-layout")) {
    auto index = readJsonMember(archive, "index.json");
    if (!index) return fail(std::move(index.error()).wrap("import " + tarPath));
    if (!index->contains("manifests") || !(*index)["manifests"].is_array())
      return fail(Error::invalid("import " + tarPath + ": index.json has no manifests"));
    for (const auto& entry : (*index)["manifests"]) {
      auto top = parseDescriptor(entry, "index.json manifests entry");
      if (!top) return fail(std::move(top.error()).wrap("import " + tarPath));
      auto body = readOciBlob(archive, top->digest);
      if (!body) return fail(std::move(body.error()).wrap("import " + tarPath));
      json doc = json::parse(*body, nullptr, false);
      if (isIndexMediaType(top->mediaType.empty() ? stringField(doc, "mediaType") : top->mediaType, doc)) {
        auto chosen = selectPlatform(doc);
        if (!chosen) return fail(std::move(chosen.error()).wrap("import " + tarPath));
        auto inner = readOciBlob(archive, chosen->digest);
        if (!inner) return fail(std::move(inner.error()).wrap("import " + tarPath));
        doc = json::parse(*inner, nullptr, false);
      }
      auto manifest = parseManifest(doc);
      if (!manifest) return fail(std::move(manifest.error()).wrap("import " + tarPath));
      auto configText = readOciBlob(archive, manifest->config.digest);
      if (!configText) return fail(std::move(configText.error()).wrap("import " + tarPath));
      std::vector<LayerSource> layers;
      auto config = parseImageConfig(*configText);
      if (!config) return fail(std::move(config.error()).wrap("import " + tarPath));
      if (config->diffIds.size() != manifest->layers.size())
        return fail(Error::invalid(fmt::format("import {}: config lists {} layers, the manifest {}", tarPath, config->diffIds.size(), manifest->layers.size())));
      for (size_t i = 0; i < manifest->layers.size(); ++i) {
        const auto& layer = manifest->layers[i];
        auto path = archive.path("blobs/sha256/" + digestHex(layer.digest));
        if (!path) return fail(std::move(path.error()).wrap("import " + tarPath));
        auto actual = digestOfFile(*path);
        if (!actual) return fail(actual.error());
        if (*actual != layer.digest) return fail(Error::invalid(fmt::format("import {}: layer blob {} has digest {}", tarPath, layer.digest, *actual)));
        layers.push_back({*path, config->diffIds[i]});
      }
      std::vector<std::string> refs;
      json annotations = entry.contains("annotations") && entry["annotations"].is_object() ? entry["annotations"] : json::object();
      for (const char* key : {"io.containerd.image.name", "org.opencontainers.image.ref.name"}) {
        std::string r = archiveReference(stringField(annotations, key));
        if (!r.empty() && std::find(refs.begin(), refs.end(), r) == refs.end()) refs.push_back(r);
      }
      refs = withExtra(refs);
      // The manifest digest becomes a repo digest for every name the image came with.
      std::string repoDigest;
      if (!refs.empty()) {
        auto ref = parseImageReference(refs.front());
        repoDigest = ref->name() + "@" + top->digest;
      }
      auto image = install(manifest->config.digest, *configText, layers, refs, repoDigest);
      if (!image) return fail(std::move(image.error()).wrap("import " + tarPath));
      images.push_back(*image);
    }
  } else if (archive.files.count("manifest.json")) {
    auto manifest = readJsonMember(archive, "manifest.json");
    if (!manifest) return fail(std::move(manifest.error()).wrap("import " + tarPath));
    if (!manifest->is_array()) return fail(Error::invalid("import " + tarPath + ": manifest.json is not a list"));
    for (const auto& entry : *manifest) {
      std::string configMember = stringField(entry, "Config");
      auto configPath = archive.path(configMember);
      if (!configPath) return fail(std::move(configPath.error()).wrap("import " + tarPath));
      auto configText = readFile(*configPath);
      if (!configText) return fail(configText.error());
      auto config = parseImageConfig(*configText);
      if (!config) return fail(std::move(config.error()).wrap("import " + tarPath));
      auto layerMembers = stringList(entry, "Layers");
      if (layerMembers.size() != config->diffIds.size())
        return fail(Error::invalid(fmt::format("import {}: config lists {} layers, manifest.json {}", tarPath, config->diffIds.size(), layerMembers.size())));
      std::vector<LayerSource> layers;
      for (size_t i = 0; i < layerMembers.size(); ++i) {
        auto path = archive.path(layerMembers[i]);
        if (!path) return fail(std::move(path.error()).wrap("import " + tarPath));
        layers.push_back({*path, config->diffIds[i]});
      }
      std::vector<std::string> refs;
      for (const auto& tag : stringList(entry, "RepoTags")) {
        auto ref = parseImageReference(tag);
        if (!ref) return fail(std::move(ref.error()).wrap("import " + tarPath + ": RepoTags"));
        refs.push_back(ref->normalized());
      }
      auto image = install(digestOf(*configText), *configText, layers, withExtra(refs), "");
      if (!image) return fail(std::move(image.error()).wrap("import " + tarPath));
      images.push_back(*image);
    }
  } else {
    return fail(Error::invalid("import " + tarPath + ": neither an oci-archive (oci-layout, index.json) nor a docker-archive (manifest.json)"));
  }
  return images;
}

// --- public face -------------------------------------------------------------------------

Result<RegistryOptions> loadRegistryOptions(const std::string& path) {
  RegistryOptions options;
  auto text = readFile(path);
  if (!text) {
    if (text.error().code == ENOENT) return options;
    return fail(text.error());
  }
  json doc = json::parse(*text, nullptr, false);
  if (!doc.is_object()) return fail(Error::invalid(path + ": not a JSON object"));
  auto field = [&](const char* key) -> const json* {
    auto it = doc.find(key);
    return it == doc.end() ? nullptr : &*it;
  };
  auto bad = [&](const char* key, const char* want) { return fail(Error::invalid(fmt::format("{}: \"{}\" must be {}", path, key, want))); };
  if (auto* v = field("plainHttpRegistries")) {
    if (!v->is_array()) return bad("plainHttpRegistries", "a list of host[:port]");
    for (const auto& r : *v) {
      if (!r.is_string()) return bad("plainHttpRegistries", "a list of host[:port]");
      options.plainHttpRegistries.push_back(r.get<std::string>());
    }
  }
  if (auto* v = field("plainHttpForLoopback")) {
    if (!v->is_boolean()) return bad("plainHttpForLoopback", "true or false");
    options.plainHttpForLoopback = v->get<bool>();
  }
  for (auto [key, target] : {std::pair{"credentialFile", &options.credentialFile}, std::pair{"caFile", &options.caFile}}) {
    if (auto* v = field(key)) {
      if (!v->is_string()) return bad(key, "a path");
      *target = v->get<std::string>();
    }
  }
  if (auto* v = field("timeoutSeconds")) {
    if (!v->is_number_integer() || v->get<int>() <= 0) return bad("timeoutSeconds", "a positive integer");
    options.timeoutSeconds = v->get<int>();
  }
  return options;
}

Status validateImageGcPolicy(const ImageGcPolicy& policy) {
  auto percent = [](int v, const char* flag) -> Status {
    if (v < 0 || v > 100) return fail(Error::invalid(fmt::format("--{}: {} is not a percentage in [0, 100]", flag, v)));
    return {};
  };
  if (auto st = percent(policy.highThresholdPercent, "image-gc-high-threshold"); !st) return st;
  if (auto st = percent(policy.lowThresholdPercent, "image-gc-low-threshold"); !st) return st;
  if (policy.lowThresholdPercent >= policy.highThresholdPercent)
    return fail(Error::invalid(fmt::format("--image-gc-low-threshold ({}) must be less than --image-gc-high-threshold ({})",
                                           policy.lowThresholdPercent, policy.highThresholdPercent)));
  if (policy.minimumAge.count() < 0)
    return fail(Error::invalid(fmt::format("--image-minimum-gc-age: {} is negative", policy.minimumAge.count())));
  return {};
}

ImageStore::ImageStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ImageStore::~ImageStore() = default;

Result<std::unique_ptr<ImageStore>> ImageStore::open(const std::string& dataDir, RegistryOptions options,
                                                     std::string unpackProgram) {
  auto impl = std::make_unique<Impl>(dataDir + "/images", std::move(options), std::move(unpackProgram));
  if (auto s = impl->init(); !s) return fail(std::move(s.error()).wrap("image store"));
  return std::unique_ptr<ImageStore>(new ImageStore(std::move(impl)));
}

Result<Image> ImageStore::find(const std::string& reference) { return impl_->find(reference); }

Result<std::vector<Image>> ImageStore::importArchive(const std::string& tarPath, const std::string& extraReference) {
  return impl_->importArchive(tarPath, extraReference);
}

Result<Image> ImageStore::pull(const std::string& reference, const CredentialSet& credentials, PullStats* stats) {
  return impl_->pull(reference, credentials, stats);
}

std::expected<Image, ImageFailure> ImageStore::ensure(const std::string& reference, PullPolicy policy,
                                                      const CredentialSet& pullSecrets, PullStats* stats,
                                                      const std::function<void()>& beforePull) {
  auto ref = parseImageReference(reference);
  if (!ref) return std::unexpected(ImageFailure{ImageFailureReason::InvalidImageName, ref.error()});
  auto local = impl_->find(ref->normalized());
  if (policy == PullPolicy::Never || (policy == PullPolicy::IfNotPresent && local)) {
    if (local) {
      impl_->touch(local->id);
      return *local;
    }
    return std::unexpected(ImageFailure{
        ImageFailureReason::ErrImageNeverPull,
        Error{ENOENT, fmt::format("Container image \"{}\" is not present with pull policy of Never", reference)}});
  }
  if (beforePull) beforePull();
  auto pulled = impl_->pull(ref->normalized(), pullSecrets, stats);
  if (!pulled) return std::unexpected(ImageFailure{ImageFailureReason::ErrImagePull, pulled.error()});
  return *pulled;
}

Status ImageStore::remove(const std::string& reference) { return impl_->remove(reference); }
std::vector<Image> ImageStore::list() { return impl_->list(); }
void ImageStore::touch(const std::string& imageId) { impl_->touch(imageId); }
Status ImageStore::garbageCollect(std::uint64_t highBytes, std::uint64_t lowBytes, const std::set<std::string>& inUse) {
  return impl_->garbageCollect(highBytes, lowBytes, inUse);
}
Result<ImageGcReport> ImageStore::garbageCollect(const ImageGcPolicy& policy, const std::set<std::string>& inUse) {
  if (auto st = validateImageGcPolicy(policy); !st) return fail(st.error());
  return impl_->garbageCollect(policy, inUse);
}
std::uint64_t ImageStore::storeBytes() { return impl_->storeBytes(); }
const std::string& ImageStore::root() const { return impl_->root_; }

}  // namespace ferry::images
