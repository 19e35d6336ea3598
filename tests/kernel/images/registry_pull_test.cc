// Pulls from a real OCI registry (Debian's docker-registry) started on 127.0.0.1 by the
// test, with images the test builds (tests/images/make-busybox-oci) and pushes with skopeo.
// Requests are counted in the registry's access log.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "agent/images/image_store.h"
#include "tests/unit/images/test_archives.h"

namespace ferry::images {
namespace {

namespace fs = std::filesystem;
using namespace testing;

std::string sourceDir() {
  const char* s = std::getenv("FERRY_SOURCE_DIR");
  return s ? s : FERRY_SOURCE_DIR_FALLBACK;
}

bool haveProgram(const std::string& name) {
  return std::system(("command -v " + name + " >/dev/null 2>&1").c_str()) == 0;
}

int freePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool waitForPort(int port, std::chrono::seconds deadline) {
  auto end = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < end) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    if (ok) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

// A child process with stdout+stderr in a log file, stopped by its PID.
class Child {
 public:
  Child() = default;
  Child(const std::vector<std::string>& argv, const std::string& logPath) : log_(logPath) {
    pid_ = ::fork();
    if (pid_ == 0) {
      int fd = ::open(logPath.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status;
    for (int i = 0; i < 50 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (::waitpid(pid_, &status, WNOHANG) == 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
    pid_ = -1;
  }
  const std::string& log() const { return log_; }

 private:
  pid_t pid_ = -1;
  std::string log_;
};

std::string run(const std::string& cmd, int* rc = nullptr) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = ::pclose(p);
  if (rc) *rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

class Registry {
 public:
  // `tls`: "CERT KEY" files to serve HTTPS with; empty: plain HTTP.
  void start(const std::string& dir, const std::string& htpasswd = "", const std::string& certificate = "",
             const std::string& key = "") {
    port = freePort();
    fs::create_directories(dir + "/storage");
    std::ofstream(dir + "/config.yml") << fmt::format(
        "version: 0.1\n"
        "log: {{level: warn, accesslog: {{disabled: false}}}}\n"
        "storage: {{filesystem: {{rootdirectory: {}/storage}}, delete: {{enabled: true}}}}\n"
        "http: {{addr: 127.0.0.1:{}{}}}\n"
        "{}",
        dir, port, certificate.empty() ? "" : fmt::format(", tls: {{certificate: {}, key: {}}}", certificate, key),
        htpasswd.empty() ? "" : fmt::format("auth: {{htpasswd: {{realm: test, path: {}}}}}\n", htpasswd));
    child = Child({"docker-registry", "serve", dir + "/config.yml"}, dir + "/registry.log");
  }
  std::string host() const { return fmt::format("127.0.0.1:{}", port); }

  // Requests from ferry (its User-Agent) whose line contains `what`, once the log has caught
  // up: a marker request sent after them is logged after them.
  int count(const std::string& what) {
    std::string marker = fmt::format("sync-{}", ++syncs_);
    run(fmt::format("curl -s -o /dev/null -A {} http://127.0.0.1:{}/v2/", marker, port));
    std::string text;
    for (int i = 0; i < 100; ++i) {
      text = readAll(child.log());
      if (text.find(marker) != std::string::npos) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    int n = 0;
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line))
      if (line.find("ferry/") != std::string::npos && line.find(what) != std::string::npos) ++n;
    return n;
  }

  int port = 0;
  Child child;

 private:
  int syncs_ = 0;
};

class RegistryPullTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    for (const char* tool : {"docker-registry", "skopeo", "htpasswd", "curl"})
      if (!haveProgram(tool)) {
        skipReason_ = fmt::format("{} is not installed", tool);
        return;
      }
    base_ = makeTempDir("registry");
    v1Digest_ = trimmed(run(fmt::format("{}/tests/images/make-busybox-oci {}/v1.tar", sourceDir(), base_)));
    v2Digest_ = trimmed(run(fmt::format("{}/tests/images/make-busybox-oci {}/v2.tar --marker changed", sourceDir(), base_)));
    if (v1Digest_.rfind("sha256:", 0) != 0 || v2Digest_.rfind("sha256:", 0) != 0) {
      skipReason_ = "make-busybox-oci failed (no static busybox?): " + v1Digest_;
      return;
    }
    anonymous_.start(base_ + "/anonymous");
    std::ofstream(base_ + "/htpasswd") << run("htpasswd -Bbn alice wonderland");
    private_.start(base_ + "/private", base_ + "/htpasswd");
    std::vector<int> ports = {anonymous_.port, private_.port};
    if (haveProgram("python3")) {
      bearerPort_ = freePort();
      bearer_ = Child({"python3", sourceDir() + "/tests/images/bearer-auth-proxy", std::to_string(bearerPort_),
                       "http://" + anonymous_.host(), "bob", "builder"},
                      base_ + "/bearer.log");
      ports.push_back(bearerPort_);
    }
    for (int port : ports)
      if (!waitForPort(port, std::chrono::seconds(60))) {
        failure_ = fmt::format("nothing listens on 127.0.0.1:{} (see logs in {})", port, base_);
        return;
      }
  }

  static void TearDownTestSuite() {
    anonymous_.child.stop();
    private_.child.stop();
    bearer_.stop();
    if (!base_.empty()) fs::remove_all(base_);
  }

  void SetUp() override {
    if (!skipReason_.empty()) GTEST_SKIP() << skipReason_;
    ASSERT_TRUE(failure_.empty()) << failure_;
    dataDir_ = makeTempDir("registry-store");
  }
  void TearDown() override {
    if (!dataDir_.empty()) fs::remove_all(dataDir_);
  }

  static std::string trimmed(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    auto nl = s.rfind('\n');
    return nl == std::string::npos ? s : s.substr(nl + 1);
  }

  static void push(const std::string& archive, const std::string& destination, const std::string& extra = "") {
    int rc = 0;
    std::string out = run(fmt::format("skopeo copy --insecure-policy --dest-tls-verify=false {} oci-archive:{} docker://{}",
                                      extra, archive, destination),
                          &rc);
    ASSERT_EQ(rc, 0) << out;
  }

  std::unique_ptr<ImageStore> openStore(RegistryOptions options = {}) {
    auto store = ImageStore::open(dataDir_ + "/" + std::to_string(stores_++), options, FERRY_UNPACK_PROGRAM);
    EXPECT_TRUE(store) << store.error().message;
    return store ? std::move(*store) : nullptr;
  }

  static inline std::string skipReason_, failure_, base_, v1Digest_, v2Digest_;
  static inline Registry anonymous_, private_;
  static inline Child bearer_;
  static inline int bearerPort_ = 0;
  std::string dataDir_;
  int stores_ = 0;
};

TEST_F(RegistryPullTest, PullsAndVerifiesAnImage) {
  push(base_ + "/v1.tar", anonymous_.host() + "/busybox:1");
  auto store = openStore();
  PullStats stats;
  auto image = store->pull(anonymous_.host() + "/busybox:1", {}, &stats);
  ASSERT_TRUE(image) << image.error().message;
  EXPECT_EQ(image->digest, v1Digest_);  // skopeo keeps the manifest byte for byte
  EXPECT_EQ(image->config.cmd, std::vector<std::string>{"sh"});
  ASSERT_EQ(image->layerDirs.size(), 1u);
  EXPECT_TRUE(fs::is_regular_file(image->layerDirs[0] + "/bin/busybox"));
  EXPECT_EQ(stats.blobsDownloaded, 2);  // config and the layer
  EXPECT_TRUE(store->find(anonymous_.host() + "/busybox:1"));
  EXPECT_TRUE(store->find(anonymous_.host() + "/busybox@" + v1Digest_));
}

TEST_F(RegistryPullTest, SecondPullOfAnUnchangedImageDownloadsNoBlob) {
  push(base_ + "/v1.tar", anonymous_.host() + "/again:1");
  auto store = openStore();
  std::string ref = anonymous_.host() + "/again:1";
  ASSERT_TRUE(store->pull(ref));
  int blobsBefore = anonymous_.count("/v2/again/blobs/");
  int manifestsBefore = anonymous_.count("/v2/again/manifests/");
  EXPECT_EQ(blobsBefore, 2);
  PullStats stats;
  auto again = store->ensure(ref, PullPolicy::Always, {}, &stats);
  ASSERT_TRUE(again) << again.error().error.message;
  EXPECT_EQ(again->digest, v1Digest_);
  EXPECT_EQ(stats.blobsDownloaded, 0);
  EXPECT_EQ(anonymous_.count("/v2/again/blobs/"), blobsBefore);                  // no blob went over the wire
  EXPECT_EQ(anonymous_.count("/v2/again/manifests/"), manifestsBefore + 1);      // one HEAD to compare digests

  // Another tag of the same image in another repository: the layer is there already.
  push(base_ + "/v1.tar", anonymous_.host() + "/other:7");
  PullStats other;
  ASSERT_TRUE(store->pull(anonymous_.host() + "/other:7", {}, &other));
  EXPECT_EQ(other.blobsDownloaded, 0);  // config and layer both stored already
  EXPECT_EQ(anonymous_.count("/v2/other/blobs/"), 0);
}

TEST_F(RegistryPullTest, PullPolicyMatrix) {
  enum State { Present, Absent, Changed };
  for (PullPolicy policy : {PullPolicy::Always, PullPolicy::IfNotPresent, PullPolicy::Never}) {
    for (State state : {Present, Absent, Changed}) {
      std::string stateName = state == Present ? "present" : state == Absent ? "absent" : "changed";
      std::string policyName = pullPolicyName(policy);
      std::transform(policyName.begin(), policyName.end(), policyName.begin(), ::tolower);
      std::string repo = fmt::format("matrix-{}-{}", policyName, stateName);
      SCOPED_TRACE(fmt::format("{} × {}", pullPolicyName(policy), stateName));
      std::string ref = anonymous_.host() + "/" + repo + ":1";
      push(base_ + "/v1.tar", ref);
      auto store = openStore();
      if (state != Absent) ASSERT_TRUE(store->pull(ref));
      if (state == Changed) push(base_ + "/v2.tar", ref);
      int requestsBefore = anonymous_.count("/v2/" + repo + "/");
      int blobsBefore = anonymous_.count("/v2/" + repo + "/blobs/");

      auto result = store->ensure(ref, policy);
      int requests = anonymous_.count("/v2/" + repo + "/") - requestsBefore;
      int blobs = anonymous_.count("/v2/" + repo + "/blobs/") - blobsBefore;

      if (policy == PullPolicy::Never && state == Absent) {
        ASSERT_FALSE(result);
        EXPECT_EQ(result.error().reason, ImageFailureReason::ErrImageNeverPull);
        EXPECT_EQ(requests, 0);
        continue;
      }
      ASSERT_TRUE(result) << result.error().error.message;
      if (policy == PullPolicy::Always) {
        // Always asks the registry; it downloads only when the digest is new to the node.
        EXPECT_GE(requests, 1);
        EXPECT_EQ(result->digest, state == Changed ? v2Digest_ : v1Digest_);
        EXPECT_EQ(blobs, state == Present ? 0 : 2);
      } else if (state == Absent) {
        EXPECT_EQ(result->digest, v1Digest_);  // IfNotPresent pulls what is missing
        EXPECT_EQ(blobs, 2);
      } else {
        // IfNotPresent and Never use the local image, even when the tag moved.
        EXPECT_EQ(result->digest, v1Digest_);
        EXPECT_EQ(requests, 0);
      }
      auto local = store->find(ref);
      ASSERT_TRUE(local);
      EXPECT_EQ(local->digest, result->digest);
    }
  }
}

TEST_F(RegistryPullTest, DockerSchema2Manifests) {
  push(base_ + "/v1.tar", anonymous_.host() + "/docker-format:1", "--format v2s2");
  auto store = openStore();
  auto image = store->pull(anonymous_.host() + "/docker-format:1");
  ASSERT_TRUE(image) << image.error().message;
  EXPECT_NE(image->digest, v1Digest_);  // a different manifest document...
  EXPECT_TRUE(fs::is_regular_file(image->layerDirs.at(0) + "/bin/busybox"));  // ...of the same content
}

TEST_F(RegistryPullTest, ImageIndexResolvesToLinuxAmd64) {
  // Two single-layer images, arm64 listed first, in an OCI index; skopeo --all pushes both.
  std::string work = base_ + "/index";
  fs::create_directories(work);
  using json = nlohmann::json;
  std::vector<TarEntry> entries = {file("oci-layout", R"({"imageLayoutVersion":"1.0.0"})"), dir("blobs"), dir("blobs/sha256")};
  json manifests = json::array();
  for (std::string arch : {"arm64", "amd64"}) {
    std::string plain = work + "/" + arch + ".tar", gz = plain + ".gz";
    writeTar(plain, {file("platform", arch)});
    writeTar(gz, {file("platform", arch)}, Compression::Gzip);
    std::string layer = readAll(gz);
    std::string config = json{{"architecture", arch}, {"os", "linux"},
                              {"rootfs", {{"type", "layers"}, {"diff_ids", {digestOf(readAll(plain))}}}}}.dump();
    std::string manifest = json{{"schemaVersion", 2}, {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                                {"config", {{"mediaType", "application/vnd.oci.image.config.v1+json"}, {"digest", digestOf(config)}, {"size", config.size()}}},
                                {"layers", {{{"mediaType", "application/vnd.oci.image.layer.v1.tar+gzip"}, {"digest", digestOf(layer)}, {"size", layer.size()}}}}}.dump();
    for (const std::string* blob : {&layer, &config, &manifest}) entries.push_back(file("blobs/sha256/" + digestHex(digestOf(*blob)), *blob));
    manifests.push_back({{"mediaType", "application/vnd.oci.image.manifest.v1+json"}, {"digest", digestOf(manifest)},
                         {"size", manifest.size()}, {"platform", {{"os", "linux"}, {"architecture", arch}}}});
  }
  std::string index = json{{"schemaVersion", 2}, {"mediaType", "application/vnd.oci.image.index.v1+json"}, {"manifests", manifests}}.dump();
  entries.push_back(file("blobs/sha256/" + digestHex(digestOf(index)), index));
  entries.push_back(file("index.json", json{{"schemaVersion", 2}, {"manifests", {{{"mediaType", "application/vnd.oci.image.index.v1+json"},
                                                                                  {"digest", digestOf(index)}, {"size", index.size()}}}}}.dump()));
  writeTar(work + "/multi.tar", entries);
  push(work + "/multi.tar", anonymous_.host() + "/multi:1", "--all");

  auto store = openStore();
  auto image = store->pull(anonymous_.host() + "/multi:1");
  ASSERT_TRUE(image) << image.error().message;
  EXPECT_EQ(image->digest, digestOf(index));  // the repo digest is the index's
  EXPECT_EQ(readAll(image->layerDirs.at(0) + "/platform"), "amd64");
}

TEST_F(RegistryPullTest, ZstdLayersArePulledVerifiedAndUnpacked) {
  // Two zstd layers, the second hiding a file of the first (a whiteout): the image the
  // test builds is pushed as it is (skopeo keeps the blobs and their media types).
  std::string work = base_ + "/zstd";
  fs::create_directories(work);
  std::string manifestDigest = writeOciArchive(
      work + "/zstd.tar", work,
      {{dir("etc"), file("etc/compressed-with", "zstd"), file("etc/gone", "lower")}, {dir("etc"), file("etc/.wh.gone", "")}},
      "zstd:1", {"sh"}, Compression::Zstd);
  push(work + "/zstd.tar", anonymous_.host() + "/zstd:1");
  // The registry serves the layers as zstd (else this test would prove nothing).
  std::string manifest = run(fmt::format("curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json' http://{}/v2/zstd/manifests/1",
                                         anonymous_.host()));
  ASSERT_NE(manifest.find("application/vnd.oci.image.layer.v1.tar+zstd"), std::string::npos) << manifest;
  ASSERT_EQ(manifest.find("tar+gzip"), std::string::npos) << manifest;

  auto store = openStore();
  PullStats stats;
  auto image = store->pull(anonymous_.host() + "/zstd:1", {}, &stats);
  ASSERT_TRUE(image) << image.error().message;
  EXPECT_EQ(image->digest, manifestDigest);
  EXPECT_EQ(stats.blobsDownloaded, 3);  // config and two layers
  ASSERT_EQ(image->layerDirs.size(), 2u);
  EXPECT_EQ(readAll(image->layerDirs[0] + "/etc/compressed-with"), "zstd");
  struct stat st{};
  ASSERT_EQ(::lstat((image->layerDirs[1] + "/etc/gone").c_str(), &st), 0);  // the overlay whiteout
  EXPECT_TRUE(S_ISCHR(st.st_mode));

  // A zstd blob whose content is not the layer its config names is refused, and the
  // store keeps nothing of it.
  std::string badWork = base_ + "/zstd-bad";
  fs::create_directories(badWork);
  writeOciArchive(badWork + "/bad.tar", badWork, {{file("x", "1")}}, "bad:1", {"sh"}, Compression::Zstd);
  // Swap the config's diff id for another layer's: the registry cannot notice, the pull must.
  {
    using json = nlohmann::json;
    std::string dirPath = badWork + "/unpacked";
    fs::create_directories(dirPath);
    ASSERT_EQ(std::system(fmt::format("tar -xf {}/bad.tar -C {}", badWork, dirPath).c_str()), 0);
    json index = json::parse(readAll(dirPath + "/index.json"));
    std::string manifestPath = dirPath + "/blobs/sha256/" + digestHex(index["manifests"][0]["digest"].get<std::string>());
    json m = json::parse(readAll(manifestPath));
    std::string configPath = dirPath + "/blobs/sha256/" + digestHex(m["config"]["digest"].get<std::string>());
    json config = json::parse(readAll(configPath));
    config["rootfs"]["diff_ids"][0] = digestOf("not this layer");
    std::string configText = config.dump();
    fs::remove(configPath);
    std::ofstream(dirPath + "/blobs/sha256/" + digestHex(digestOf(configText))) << configText;
    m["config"]["digest"] = digestOf(configText);
    m["config"]["size"] = configText.size();
    std::string manifestText = m.dump();
    fs::remove(manifestPath);
    std::ofstream(dirPath + "/blobs/sha256/" + digestHex(digestOf(manifestText))) << manifestText;
    index["manifests"][0]["digest"] = digestOf(manifestText);
    index["manifests"][0]["size"] = manifestText.size();
    std::ofstream(dirPath + "/index.json") << index.dump();
    ASSERT_EQ(std::system(fmt::format("tar -cf {}/bad2.tar -C {} .", badWork, dirPath).c_str()), 0);
  }
  push(badWork + "/bad2.tar", anonymous_.host() + "/zstd-bad:1");
  auto bad = store->pull(anonymous_.host() + "/zstd-bad:1");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("diff"), std::string::npos) << bad.error().message;
  EXPECT_FALSE(store->find(anonymous_.host() + "/zstd-bad:1"));
  EXPECT_EQ(store->list().size(), 1u);
}

TEST_F(RegistryPullTest, PrivateRegistryNeedsItsPullSecret) {
  push(base_ + "/v1.tar", private_.host() + "/secret:1", "--dest-creds alice:wonderland");
  std::string ref = private_.host() + "/secret:1";
  {
    auto store = openStore();
    auto anonymous = store->ensure(ref, PullPolicy::IfNotPresent);
    ASSERT_FALSE(anonymous);
    EXPECT_EQ(anonymous.error().reason, ImageFailureReason::ErrImagePull);
    EXPECT_NE(anonymous.error().error.message.find("credentials"), std::string::npos) << anonymous.error().error.message;

    auto wrong = parseDockerConfigJson(fmt::format(R"({{"auths":{{"{}":{{"username":"alice","password":"nope"}}}}}})", private_.host()));
    ASSERT_TRUE(wrong);
    auto refused = store->ensure(ref, PullPolicy::IfNotPresent, *wrong);
    ASSERT_FALSE(refused);
    EXPECT_NE(refused.error().error.message.find("401"), std::string::npos) << refused.error().error.message;

    // The decoded .dockerconfigjson of a kubernetes.io/dockerconfigjson Secret; auth = base64("alice:wonderland").
    auto secret = parseDockerConfigJson(fmt::format(R"({{"auths":{{"http://{}":{{"auth":"YWxpY2U6d29uZGVybGFuZA=="}}}}}})", private_.host()));
    ASSERT_TRUE(secret);
    auto pulled = store->ensure(ref, PullPolicy::IfNotPresent, *secret);
    ASSERT_TRUE(pulled) << pulled.error().error.message;
    EXPECT_EQ(pulled->digest, v1Digest_);
  }
  {
    // The node's credential file works the same way.
    std::string file = dataDir_ + "/config.json";
    std::ofstream(file) << fmt::format(R"({{"auths":{{"{}":{{"username":"alice","password":"wonderland"}}}}}})", private_.host());
    RegistryOptions options;
    options.credentialFile = file;
    auto store = openStore(options);
    auto pulled = store->ensure(ref, PullPolicy::Always);
    ASSERT_TRUE(pulled) << pulled.error().error.message;
  }
}

TEST_F(RegistryPullTest, HttpsRegistryVerifiedWithTheConfiguredCa) {
  if (!haveProgram("openssl")) GTEST_SKIP() << "openssl is not installed";
  // A registry serving HTTPS with a certificate for 127.0.0.1 that no system CA signed.
  std::string dir = base_ + "/https";
  fs::create_directories(dir);
  int rc = 0;
  std::string made = run(fmt::format("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
                                     "-subj /CN=test-registry -addext subjectAltName=IP:127.0.0.1 -keyout {0}/key.pem -out {0}/cert.pem",
                                     dir),
                         &rc);
  ASSERT_EQ(rc, 0) << made;
  Registry https;
  https.start(dir, "", dir + "/cert.pem", dir + "/key.pem");
  struct Stop {
    Registry& r;
    ~Stop() { r.child.stop(); }
  } stop{https};
  ASSERT_TRUE(waitForPort(https.port, std::chrono::seconds(60))) << readAll(https.child.log());
  push(base_ + "/v1.tar", https.host() + "/secure:1");
  std::string ref = https.host() + "/secure:1";

  RegistryOptions options;
  options.plainHttpForLoopback = false;  // loopback would otherwise be plain HTTP, as with Docker
  {
    // The system's CAs do not know this certificate: refused, and the error says why.
    auto store = openStore(options);
    auto refused = store->pull(ref);
    ASSERT_FALSE(refused);
    EXPECT_NE(refused.error().message.find("certificate"), std::string::npos) << refused.error().message;
  }
  options.caFile = dir + "/cert.pem";
  auto store = openStore(options);
  PullStats stats;
  auto image = store->pull(ref, {}, &stats);
  ASSERT_TRUE(image) << image.error().message;
  EXPECT_EQ(image->digest, v1Digest_);
  EXPECT_EQ(stats.blobsDownloaded, 2);
  EXPECT_TRUE(fs::is_regular_file(image->layerDirs.at(0) + "/bin/busybox"));
  // The registry speaks only TLS: a plain-HTTP client is turned away.
  EXPECT_NE(run(fmt::format("curl -s http://{}/v2/", https.host())).find("HTTP request to an HTTPS server"), std::string::npos);
}

TEST_F(RegistryPullTest, BearerTokenFlow) {
  if (bearerPort_ == 0) GTEST_SKIP() << "python3 (for tests/images/bearer-auth-proxy) is not installed";
  push(base_ + "/v1.tar", anonymous_.host() + "/tokened:1");
  std::string ref = fmt::format("127.0.0.1:{}/tokened:1", bearerPort_);
  auto store = openStore();
  auto anonymous = store->pull(ref);
  ASSERT_FALSE(anonymous);
  EXPECT_NE(anonymous.error().message.find("token"), std::string::npos) << anonymous.error().message;
  auto creds = parseDockerConfigJson(fmt::format(R"({{"auths":{{"127.0.0.1:{}":{{"username":"bob","password":"builder"}}}}}})", bearerPort_));
  ASSERT_TRUE(creds);
  PullStats stats;
  auto image = store->pull(ref, *creds, &stats);
  ASSERT_TRUE(image) << image.error().message;
  EXPECT_EQ(image->digest, v1Digest_);
  EXPECT_EQ(stats.blobsDownloaded, 2);
}

}  // namespace
}  // namespace ferry::images
