// The node's image store: content-addressed layers and image records under
// <dataDir>/images, filled by registry pulls and archive imports, read by the container
// runtime (layerDirs become overlayfs lowerdirs). Safe to use from several threads and
// from several processes at once (the agent and `ferry image`).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "agent/images/image_reference.h"
#include "agent/images/registry_credentials.h"
#include "api/error.h"

namespace ferry::images {

// The parts of an image's config the runtime uses (OCI image config "config" object).
struct ImageConfig {
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::vector<std::string> env;  // "NAME=value"
  std::string workingDir;
  std::string user;  // "uid", "uid:gid", "name" — as written in the image
};

struct Image {
  std::vector<std::string> references;  // normalized names pointing at this image
  std::string digest;  // repo digest "sha256:..." of the manifest (or index) pulled; empty when imported from a docker-archive
  std::string id;      // config digest "sha256:..." (Kubernetes' imageID)
  // Unpacked layer directories, lowest first: overlayfs wants them reversed
  // ("lowerdir=top:...:bottom").
  std::vector<std::string> layerDirs;
  ImageConfig config;
  std::int64_t sizeBytes = 0;  // unpacked size of all its layers
  std::int64_t lastUsedUnixSeconds = 0;
};

// Why an ensure() failed, in the reason strings the kubelet puts in container statuses
// and Events. ImagePullBackOff is the agent's back-off state after ErrImagePull.
enum class ImageFailureReason { InvalidImageName, ErrImageNeverPull, ErrImagePull };
const char* imageFailureReasonName(ImageFailureReason reason);  // "InvalidImageName", ...

struct ImageFailure {
  ImageFailureReason reason;
  Error error;  // the message for the Event / status ("pull 127.0.0.1:5000/x:1: manifest: 401 ...")
};

// Registry behaviour, from the node config.
struct RegistryOptions {
  // Registries (host[:port]) reached over plain HTTP instead of HTTPS.
  std::vector<std::string> plainHttpRegistries;
  // Like Docker: registries on 127.0.0.0/8, ::1 and "localhost" use plain HTTP.
  bool plainHttpForLoopback = true;
  // Node credentials (docker config.json format); empty path: none.
  std::string credentialFile;
  // CA bundle for HTTPS registries; empty: the system's.
  std::string caFile;
  // Per-request stall limit.
  int timeoutSeconds = 300;
};

// Reads registry options from the node's registries file (JSON):
//   {"plainHttpRegistries": ["10.0.0.5:5000"], "plainHttpForLoopback": true,
//    "credentialFile": "/etc/ferry/registry-auth.json", "caFile": "", "timeoutSeconds": 300}
// Missing keys keep their defaults; a missing file gives the defaults. Bad fields are named.
Result<RegistryOptions> loadRegistryOptions(const std::string& path);

// Image garbage collection as the kubelet does it: when the filesystem holding the store
// is at least `highThresholdPercent` full, images no pod uses are removed, least recently
// used first, until it is at most `lowThresholdPercent` full. Images used within
// `minimumAge` are kept (a just-pulled image is about to be used).
struct ImageGcPolicy {
  int highThresholdPercent = 85;  // --image-gc-high-threshold; 100 disables GC
  int lowThresholdPercent = 80;   // --image-gc-low-threshold
  std::chrono::seconds minimumAge{120};  // --image-minimum-gc-age
};
// Percentages within [0, 100], low below high, age not negative; the error names the flag.
Status validateImageGcPolicy(const ImageGcPolicy& policy);

struct ImageGcReport {
  bool triggered = false;  // usage was at or above the high threshold
  int usagePercentBefore = 0;
  int usagePercentAfter = 0;
  std::vector<std::string> removed;  // first reference (or id) of each removed image
  // Set when the images not in use did not free enough (the kubelet's FreeDiskSpaceFailed).
  std::string shortfall;
};

// What a pull did, for tests and logs.
struct PullStats {
  int manifestRequests = 0;
  int blobsDownloaded = 0;
  std::int64_t bytesDownloaded = 0;
};

class ImageStore {
 public:
  // `unpackProgram`: the ferry-unpack that unpacks layers and archives (unpack_helper.h);
  // empty: the one beside the running executable.
  static Result<std::unique_ptr<ImageStore>> open(const std::string& dataDir, RegistryOptions options = {},
                                                  std::string unpackProgram = "");
  ~ImageStore();

  // Local lookup by reference ("busybox:1.36" is normalized first), by id ("sha256:<config>")
  // or by repo digest ("name@sha256:..."). ENOENT when absent.
  Result<Image> find(const std::string& reference);

  // Imports a docker-archive (`docker save`) or oci-archive tarball; references come from
  // the archive (RepoTags / org.opencontainers.image.ref.name / io.containerd.image.name),
  // plus `extraReference` when given. Returns every image the archive held.
  Result<std::vector<Image>> importArchive(const std::string& tarPath, const std::string& extraReference = "");

  // Pulls from the registry: resolves the manifest (index → linux/amd64), and downloads
  // only blobs not already stored. When the reference already points at the same
  // manifest digest, nothing but the manifest check goes over the wire.
  Result<Image> pull(const std::string& reference, const CredentialSet& credentials = {},
                     PullStats* stats = nullptr);

  // The kubelet's decision: Never → the local image or ErrImageNeverPull; IfNotPresent →
  // local, else pull; Always → pull (which re-downloads nothing when the digest is
  // unchanged). `pullSecrets` come from the pod's imagePullSecrets and are asked before
  // the node credential file. `beforePull` is called when the decision is to go to the
  // registry, before the first request (the kubelet's Pulling event).
  std::expected<Image, ImageFailure> ensure(const std::string& reference, PullPolicy policy,
                                            const CredentialSet& pullSecrets = {},
                                            PullStats* stats = nullptr,
                                            const std::function<void()>& beforePull = {});

  // Removes a reference (or, given an id, the image and all its references); layers no
  // image uses any more are deleted.
  Status remove(const std::string& reference);

  std::vector<Image> list();

  // Marks an image used now (the GC removes least recently used images first).
  void touch(const std::string& imageId);

  // Kubelet-style image GC: when the store holds more than `highBytes`, removes images not
  // in `inUse` (ids or references), least recently used first, until at most `lowBytes`.
  Status garbageCollect(std::uint64_t highBytes, std::uint64_t lowBytes, const std::set<std::string>& inUse);

  // The kubelet's rule on the image filesystem (statvfs of the store's directory): see
  // ImageGcPolicy. `inUse` holds image references (normalized here), ids or repo digests.
  // When the images not in use do not free enough, it removes what it can and says so in
  // the report's `shortfall`.
  Result<ImageGcReport> garbageCollect(const ImageGcPolicy& policy, const std::set<std::string>& inUse);

  // Bytes of all unpacked layers in the store.
  std::uint64_t storeBytes();

  const std::string& root() const;

 private:
  class Impl;
  explicit ImageStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ferry::images
