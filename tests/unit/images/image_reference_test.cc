#include "agent/images/image_reference.h"
#include "agent/images/registry_credentials.h"

#include <gtest/gtest.h>

namespace ferry::images {
namespace {

std::string normalize(const std::string& s) {
  auto r = parseImageReference(s);
  return r ? r->normalized() : "ERROR: " + r.error().message;
}

TEST(ImageReference, NormalizesLikeDocker) {
  EXPECT_EQ(normalize("busybox"), "docker.io/library/busybox:latest");
  EXPECT_EQ(normalize("busybox:1.36"), "docker.io/library/busybox:1.36");
  EXPECT_EQ(normalize("library/busybox:1.36"), "docker.io/library/busybox:1.36");
  EXPECT_EQ(normalize("docker.io/busybox"), "docker.io/library/busybox:latest");
  EXPECT_EQ(normalize("index.docker.io/library/busybox"), "docker.io/library/busybox:latest");
  EXPECT_EQ(normalize("bitnami/redis:7"), "docker.io/bitnami/redis:7");
  EXPECT_EQ(normalize("quay.io/coreos/etcd:v3.5"), "quay.io/coreos/etcd:v3.5");
  EXPECT_EQ(normalize("127.0.0.1:5000/busybox:1"), "127.0.0.1:5000/busybox:1");
  EXPECT_EQ(normalize("localhost/app"), "localhost/app:latest");
  EXPECT_EQ(normalize("registry.k8s.io/pause:3.9"), "registry.k8s.io/pause:3.9");
  EXPECT_EQ(normalize("a/b/c/d-e__f.g:T_1.x-y"), "docker.io/a/b/c/d-e__f.g:T_1.x-y");
}

TEST(ImageReference, SplitsRegistryRepositoryTagDigest) {
  std::string digest = "sha256:" + std::string(64, 'a');
  auto r = parseImageReference("reg.example:5000/team/app:1.2@" + digest);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->registry, "reg.example:5000");
  EXPECT_EQ(r->repository, "team/app");
  EXPECT_EQ(r->tag, "1.2");
  EXPECT_EQ(r->digest, digest);
  EXPECT_EQ(r->manifestSelector(), digest);
  EXPECT_EQ(r->name(), "reg.example:5000/team/app");

  auto d = parseImageReference("busybox@" + digest);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->tag, "");  // a digest alone gets no "latest"
  EXPECT_EQ(d->normalized(), "docker.io/library/busybox@" + digest);
}

TEST(ImageReference, RejectsInvalidNamesWithAReason) {
  for (const char* bad : {"", "Busybox", "busybox:", "busybox:-bad", "busybox@sha256:abc", "busybox@md5:" , ":tag",
                          "bad host:5000/x", "a//b", "a/-b", "reg:99999999/x", "x:" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}) {
    auto r = parseImageReference(bad);
    EXPECT_FALSE(r) << "accepted \"" << bad << "\" as " << (r ? r->normalized() : "");
    if (!r) {
      EXPECT_EQ(r.error().code, EINVAL);
      EXPECT_NE(r.error().message.find("invalid image reference"), std::string::npos);
    }
  }
  auto upper = parseImageReference("docker.io/Library/busybox");
  ASSERT_FALSE(upper);
  EXPECT_NE(upper.error().message.find("lowercase"), std::string::npos);
}

TEST(PullPolicy, DefaultFollowsTheTag) {
  EXPECT_EQ(defaultPullPolicy("busybox"), PullPolicy::Always);
  EXPECT_EQ(defaultPullPolicy("busybox:latest"), PullPolicy::Always);
  EXPECT_EQ(defaultPullPolicy("127.0.0.1:5000/busybox"), PullPolicy::Always);
  EXPECT_EQ(defaultPullPolicy("busybox:1.36"), PullPolicy::IfNotPresent);
  EXPECT_EQ(defaultPullPolicy("busybox@sha256:" + std::string(64, '0')), PullPolicy::IfNotPresent);
  EXPECT_EQ(defaultPullPolicy("127.0.0.1:5000/busybox:1"), PullPolicy::IfNotPresent);
}

TEST(PullPolicy, ParsesApiStrings) {
  EXPECT_EQ(parsePullPolicy("Always").value(), PullPolicy::Always);
  EXPECT_EQ(parsePullPolicy("IfNotPresent").value(), PullPolicy::IfNotPresent);
  EXPECT_EQ(parsePullPolicy("Never").value(), PullPolicy::Never);
  EXPECT_FALSE(parsePullPolicy("always"));
  EXPECT_STREQ(pullPolicyName(PullPolicy::IfNotPresent), "IfNotPresent");
}

TEST(Credentials, ParsesDockerConfigJsonAndMatchesRegistries) {
  // auth = base64("alice:s3cret")
  auto set = parseDockerConfigJson(R"({"auths": {
      "https://index.docker.io/v1/": {"auth": "YWxpY2U6czNjcmV0"},
      "127.0.0.1:5000": {"username": "bob", "password": "pw"},
      "127.0.0.1:5000/team": {"username": "carol", "password": "pw2"}}})");
  ASSERT_TRUE(set) << set.error().message;
  auto hub = set->lookup("docker.io", "library/busybox");
  EXPECT_EQ(hub.username, "alice");
  EXPECT_EQ(hub.password, "s3cret");
  EXPECT_EQ(set->lookup("127.0.0.1:5000", "busybox").username, "bob");
  EXPECT_EQ(set->lookup("127.0.0.1:5000", "team/app").username, "carol");  // the longer location wins
  EXPECT_TRUE(set->lookup("127.0.0.1:5001", "busybox").empty());
  EXPECT_TRUE(set->lookup("127.0.0.1:50000", "busybox").empty());  // no prefix match across the port
}

TEST(Credentials, PullSecretsComeBeforeTheNodeFile) {
  auto secret = parseDockerConfigJson(R"({"auths": {"reg:5000": {"username": "from-secret", "password": "a"}}})");
  auto node = parseDockerConfigJson(R"({"auths": {"reg:5000": {"username": "from-node", "password": "b"}}})");
  ASSERT_TRUE(secret && node);
  CredentialSet all = *secret;
  all.append(*node);
  EXPECT_EQ(all.lookup("reg:5000", "x").username, "from-secret");
}

TEST(Credentials, BadInputNamesTheField) {
  auto notJson = parseDockerConfigJson("{");
  ASSERT_FALSE(notJson);
  auto badAuth = parseDockerConfigJson(R"({"auths": {"reg": {"auth": "bm9jb2xvbg=="}}})");  // "nocolon"
  ASSERT_FALSE(badAuth);
  EXPECT_NE(badAuth.error().message.find("auths[\"reg\"].auth"), std::string::npos) << badAuth.error().message;
  auto legacy = parseDockerConfigJson(R"({"reg:5000": {"auth": "YWxpY2U6czNjcmV0"}})");  // .dockercfg
  ASSERT_TRUE(legacy);
  EXPECT_EQ(legacy->lookup("reg:5000", "x").username, "alice");
}

}  // namespace
}  // namespace ferry::images
