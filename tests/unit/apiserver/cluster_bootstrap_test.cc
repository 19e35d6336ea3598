// Joining a second server to a cluster through the datastore: the CA travels
// encrypted with the join token. The logic is the same on every backend, so it
// runs on a real SQLite store here; the HA e2e test does it on etcd.
#include "controlplane-lite/certs.h"
#include "controlplane-lite/cluster_bootstrap.h"
#include "controlplane-lite/store.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

using namespace ferry;
using namespace ferry::cp;
namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class ClusterBootstrap : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ferry-bootstrap-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root = tmpl;
    fs::create_directories(root / "store");
    auto s = openStore("sqlite", (root / "store").string());
    ASSERT_TRUE(s) << s.error().message;
    store = std::move(*s);
  }
  void TearDown() override {
    store.reset();
    fs::remove_all(root);
  }

  // What runServer does on a shared datastore, minus the network.
  Status startServer(const std::string& name, const std::string& tokenFile = {}) {
    std::string dir = (root / name).string();
    fs::create_directories(dir);
    if (auto st = prepareClusterCa(*store, dir, tokenFile); !st) return st;
    auto creds = ensureClusterCredentials(dir, {{"localhost"}, {"127.0.0.1"}}, "https://127.0.0.1:6443");
    if (!creds) return fail(creds.error());
    return publishClusterCa(*store, dir);
  }
  fs::path writeToken(const std::string& name, const std::string& token) {
    fs::path p = root / (name + ".token");
    std::ofstream(p) << token << "\n";
    return p;
  }

  fs::path root;
  std::unique_ptr<Store> store;
};

}  // namespace

TEST_F(ClusterBootstrap, SecondServerWithTheTokenGetsTheSameCaAndItsOwnCertificates) {
  ASSERT_TRUE(startServer("a"));
  auto record = store->get(kClusterBootstrapKey);
  ASSERT_TRUE(record) << record.error().message;
  EXPECT_EQ(record->value.find("PRIVATE KEY"), std::string::npos) << "the CA key must not sit in the store in clear";
  EXPECT_EQ(record->value.find("BEGIN CERTIFICATE"), std::string::npos);

  ASSERT_TRUE(startServer("b", (root / "a" / "token").string()));
  EXPECT_EQ(slurp(root / "b" / "tls" / "ca.crt"), slurp(root / "a" / "tls" / "ca.crt"));
  EXPECT_EQ(slurp(root / "b" / "tls" / "ca.key"), slurp(root / "a" / "tls" / "ca.key"));
  EXPECT_EQ(slurp(root / "b" / "token"), slurp(root / "a" / "token"));
  EXPECT_NE(slurp(root / "b" / "tls" / "server.crt"), slurp(root / "a" / "tls" / "server.crt"));
  EXPECT_EQ(fs::status(root / "b" / "tls" / "ca.key").permissions() & fs::perms::others_all, fs::perms::none);

  // Restarts on the same data dirs: no flag needed, nothing changes.
  std::string caBefore = slurp(root / "b" / "tls" / "ca.crt");
  ASSERT_TRUE(startServer("b"));
  ASSERT_TRUE(startServer("a"));
  EXPECT_EQ(slurp(root / "b" / "tls" / "ca.crt"), caBefore);
}

TEST_F(ClusterBootstrap, FreshDataDirWithoutTokenIsRefusedAndGetsNoCa) {
  ASSERT_TRUE(startServer("a"));
  auto st = startServer("c");
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("--token-file"), std::string::npos) << st.error().message;
  EXPECT_FALSE(fs::exists(root / "c" / "tls" / "ca.key"));
}

TEST_F(ClusterBootstrap, WrongTokenIsRefusedAndWritesNothing) {
  ASSERT_TRUE(startServer("a"));
  auto st = startServer("c", writeToken("wrong", "F10000000000000000000000000000000000000000000000000").string());
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, EACCES);
  EXPECT_NE(st.error().message.find("does not open"), std::string::npos) << st.error().message;
  EXPECT_FALSE(fs::exists(root / "c" / "tls" / "ca.key"));
  EXPECT_FALSE(fs::exists(root / "c" / "token"));
}

TEST_F(ClusterBootstrap, DataDirOfAnotherClusterIsRefused) {
  ASSERT_TRUE(startServer("a"));
  // d was made for some other cluster (its own CA and token) before meeting this store.
  std::string d = (root / "d").string();
  ASSERT_TRUE(ensureClusterCredentials(d, {}, "https://127.0.0.1:6443"));
  auto st = startServer("d");
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, EACCES) << st.error().message;
  // With the cluster's token forced on it, the mismatch is named as such.
  auto st2 = startServer("d", (root / "a" / "token").string());
  ASSERT_FALSE(st2);
  EXPECT_NE(st2.error().message.find("differs from the data dir's token"), std::string::npos) << st2.error().message;
  // Same token, other CA (a data dir restored from elsewhere): named too.
  fs::copy_file(root / "a" / "token", root / "d" / "token", fs::copy_options::overwrite_existing);
  auto st3 = startServer("d");
  ASSERT_FALSE(st3);
  EXPECT_NE(st3.error().message.find("is not the CA of the cluster"), std::string::npos) << st3.error().message;
}

TEST_F(ClusterBootstrap, AlteredRecordIsRefused) {
  ASSERT_TRUE(startServer("a"));
  auto record = store->get(kClusterBootstrapKey);
  ASSERT_TRUE(record);
  std::string altered = record->value;
  auto at = altered.find("\"ciphertext\":\"") + 14;
  altered[at] = altered[at] == 'A' ? 'B' : 'A';
  ASSERT_TRUE(store->update(kClusterBootstrapKey, altered, 0));
  auto st = startServer("b", (root / "a" / "token").string());
  ASSERT_FALSE(st);
  EXPECT_FALSE(fs::exists(root / "b" / "tls" / "ca.key"));

  ASSERT_TRUE(store->update(kClusterBootstrapKey, "{\"kind\":\"something else\"}", 0));
  auto st2 = startServer("b", (root / "a" / "token").string());
  ASSERT_FALSE(st2);
  EXPECT_NE(st2.error().message.find("not bootstrap data"), std::string::npos) << st2.error().message;
}

TEST_F(ClusterBootstrap, TwoFirstStartsAtOnceTheLoserIsToldWhy) {
  // Both prepared on the empty store before either published.
  for (const char* name : {"a", "b"}) {
    std::string dir = (root / name).string();
    fs::create_directories(dir);
    ASSERT_TRUE(prepareClusterCa(*store, dir, {}));
    ASSERT_TRUE(ensureClusterCredentials(dir, {}, "https://127.0.0.1:6443"));
  }
  ASSERT_TRUE(publishClusterCa(*store, (root / "a").string()));
  auto st = publishClusterCa(*store, (root / "b").string());
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("another server created this cluster"), std::string::npos) << st.error().message;
}

TEST_F(ClusterBootstrap, TokenFileSetsANewClustersToken) {
  ASSERT_TRUE(startServer("a", writeToken("chosen", "F10mychosentoken").string()));
  EXPECT_EQ(slurp(root / "a" / "token"), "F10mychosentoken\n");
  ASSERT_TRUE(startServer("b", writeToken("chosen", "F10mychosentoken").string()));
  EXPECT_EQ(slurp(root / "b" / "tls" / "ca.crt"), slurp(root / "a" / "tls" / "ca.crt"));
  auto empty = startServer("c", writeToken("empty", "").string());
  ASSERT_FALSE(empty);
  EXPECT_NE(empty.error().message.find("is empty"), std::string::npos) << empty.error().message;
}
