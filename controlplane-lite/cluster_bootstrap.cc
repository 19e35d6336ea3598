#include "controlplane-lite/cluster_bootstrap.h"

#include "api/base64.h"
#include "api/object.h"
#include "controlplane-lite/certs.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

namespace ferry::cp {
namespace {

namespace fs = std::filesystem;

// PBKDF2 makes guessing a token offline slow (the value sits in etcd, readable by
// whoever can read etcd); the token itself has 96 random bits.
constexpr int kKdfIterations = 100000;
constexpr std::size_t kSaltBytes = 16, kIvBytes = 12, kTagBytes = 16, kKeyBytes = 32;
// Bound to the ciphertext so it cannot be replayed as some other kind of record.
constexpr std::string_view kAssociatedData = "ferry cluster CA v1";

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

Result<std::string> readText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(errno ? errno : ENOENT, "read " + path.string() + ": " + std::strerror(errno ? errno : ENOENT));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string randomBytes(std::size_t n) {
  std::string out(n, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n));
  return out;
}

Result<std::string> deriveKey(const std::string& token, const std::string& salt, int iterations) {
  std::string key(kKeyBytes, '\0');
  if (PKCS5_PBKDF2_HMAC(token.data(), static_cast<int>(token.size()),
                        reinterpret_cast<const unsigned char*>(salt.data()), static_cast<int>(salt.size()), iterations,
                        EVP_sha256(), static_cast<int>(key.size()), reinterpret_cast<unsigned char*>(key.data())) != 1)
    return fail(EIO, "derive key from token: PBKDF2 failed");
  return key;
}

using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

// AES-256-GCM: the tag makes a wrong token or an altered record fail instead of
// yielding garbage PEM.
Result<std::string> seal(const std::string& token, const PemPair& ca) {
  std::string salt = randomBytes(kSaltBytes), iv = randomBytes(kIvBytes);
  auto key = deriveKey(token, salt, kKdfIterations);
  if (!key) return fail(key.error());
  std::string plain = api::Json{{"caCert", ca.certPem}, {"caKey", ca.keyPem}}.dump();
  std::string sealed(plain.size() + 16, '\0'), tag(kTagBytes, '\0');
  CipherCtx ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  int len = 0, total = 0;
  auto u = [](std::string& s) { return reinterpret_cast<unsigned char*>(s.data()); };
  auto cu = [](std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); };
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, cu(*key), cu(iv)) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, cu(kAssociatedData), static_cast<int>(kAssociatedData.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), u(sealed), &len, cu(plain), static_cast<int>(plain.size())) != 1)
    return fail(EIO, "encrypt cluster CA: AES-GCM failed");
  total = len;
  if (EVP_EncryptFinal_ex(ctx.get(), u(sealed) + total, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagBytes), u(tag)) != 1)
    return fail(EIO, "encrypt cluster CA: AES-GCM failed");
  sealed.resize(total + len);
  return api::Json{{"kind", "FerryClusterBootstrap"},
                   {"version", 1},
                   {"kdf", "pbkdf2-hmac-sha256"},
                   {"iterations", kKdfIterations},
                   {"salt", api::base64Encode(salt)},
                   {"iv", api::base64Encode(iv)},
                   {"tag", api::base64Encode(tag)},
                   {"ciphertext", api::base64Encode(sealed)}}
      .dump();
}

Result<PemPair> open(const std::string& token, const std::string& record) {
  auto bad = [](const std::string& why) { return fail(EINVAL, std::string(kClusterBootstrapKey) + " in the datastore: " + why); };
  api::Json j = api::Json::parse(record, nullptr, false);
  if (j.is_discarded() || !j.is_object() || j.value("kind", "") != "FerryClusterBootstrap") return bad("not bootstrap data");
  if (j.value("version", 0) != 1) return bad("version " + j.value("version", api::Json()).dump() + " is not 1");
  auto field = [&](const char* name) -> Result<std::string> {
    if (!j.contains(name) || !j[name].is_string()) return fail(EINVAL, std::string("field ") + name + " missing");
    return api::base64Decode(j[name].get<std::string>());
  };
  auto salt = field("salt"), iv = field("iv"), tag = field("tag"), sealed = field("ciphertext");
  for (auto* r : {&salt, &iv, &tag, &sealed})
    if (!*r) return bad(r->error().message);
  int iterations = j.value("iterations", 0);
  if (iterations < 1 || iv->size() != kIvBytes || tag->size() != kTagBytes) return bad("bad iterations, iv or tag");
  auto key = deriveKey(token, *salt, iterations);
  if (!key) return fail(key.error());
  std::string plain(sealed->size() + 16, '\0');
  CipherCtx ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  int len = 0, total = 0;
  auto u = [](std::string& s) { return reinterpret_cast<unsigned char*>(s.data()); };
  auto cu = [](std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); };
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, cu(*key), cu(*iv)) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, cu(kAssociatedData), static_cast<int>(kAssociatedData.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), u(plain), &len, cu(*sealed), static_cast<int>(sealed->size())) != 1)
    return fail(EIO, "decrypt cluster CA: AES-GCM failed");
  total = len;
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagBytes), u(*tag)) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), u(plain) + total, &len) != 1)
    return fail(EACCES, "the join token does not open the cluster's bootstrap data (" + std::string(kClusterBootstrapKey) +
                            "): use the first server's data-dir/token");
  plain.resize(total + len);
  api::Json inner = api::Json::parse(plain, nullptr, false);
  if (inner.is_discarded() || !inner.value("caCert", "").size() || !inner.value("caKey", "").size())
    return bad("decrypted data holds no CA");
  return PemPair{inner["caCert"].get<std::string>(), inner["caKey"].get<std::string>()};
}

struct DataDirFiles {
  fs::path tlsDir, caCert, caKey, token;
  explicit DataDirFiles(const std::string& dataDir)
      : tlsDir(fs::path(dataDir) / "tls"), caCert(tlsDir / "ca.crt"), caKey(tlsDir / "ca.key"),
        token(fs::path(dataDir) / "token") {}
};

// The token this server holds: its data dir's, else --token-file's. Both given
// and different is an error (a data dir of one cluster, a token of another).
Result<std::string> localToken(const DataDirFiles& files, const std::string& tokenFile) {
  std::string fromDir, fromFlag;
  if (fs::exists(files.token)) {
    auto t = readText(files.token);
    if (!t) return fail(t.error());
    fromDir = trimmed(*t);
  }
  if (!tokenFile.empty()) {
    auto t = readText(tokenFile);
    if (!t) return fail(t.error().wrap("--token-file"));
    fromFlag = trimmed(*t);
    if (fromFlag.empty()) return fail(EINVAL, "--token-file " + tokenFile + " is empty");
  }
  if (!fromDir.empty() && !fromFlag.empty() && fromDir != fromFlag)
    return fail(EINVAL, "--token-file " + tokenFile + " differs from the data dir's token " + files.token.string());
  return fromDir.empty() ? fromFlag : fromDir;
}

Result<std::string> bootstrapRecord(Store& store) {
  auto kv = store.get(kClusterBootstrapKey);
  if (!kv) {
    if (kv.error().code == ENOENT) return std::string();
    return fail(kv.error().wrap("read cluster bootstrap data"));
  }
  return kv->value;
}

Status checkSameCa(const PemPair& cluster, const DataDirFiles& files) {
  auto mine = readText(files.caCert);
  if (!mine) return fail(mine.error());
  if (trimmed(*mine) != trimmed(cluster.certPem))
    return fail(EINVAL, "the data dir's CA (" + files.caCert.string() +
                            ") is not the CA of the cluster in this datastore: use a fresh --data-dir with "
                            "--token-file, or another datastore");
  return {};
}

}  // namespace

Status prepareClusterCa(Store& store, const std::string& dataDir, const std::string& tokenFile) {
  DataDirFiles files(dataDir);
  auto token = localToken(files, tokenFile);
  if (!token) return fail(token.error());
  auto record = bootstrapRecord(store);
  if (!record) return fail(record.error());
  std::error_code ec;
  fs::create_directories(files.tlsDir, ec);
  if (ec) return fail(ec.value(), "create " + files.tlsDir.string() + ": " + ec.message());
  fs::permissions(files.tlsDir, fs::perms::owner_all, ec);

  bool haveCa = fs::exists(files.caCert) && fs::exists(files.caKey);
  if (record->empty()) {
    // A new cluster. A token given by flag becomes its join token.
    if (!fs::exists(files.token) && !token->empty())
      if (auto st = writeFileAtomically(files.token.string(), *token + "\n", 0600); !st) return fail(st.error());
    return {};
  }
  if (token->empty())
    return fail(EINVAL, "this datastore already holds a cluster: start with --token-file set to the first "
                        "server's data-dir/token to join it");
  auto ca = open(*token, *record);
  if (!ca) return fail(ca.error());
  if (haveCa) return checkSameCa(*ca, files);
  if (auto st = writeFileAtomically(files.caKey.string(), ca->keyPem, 0600); !st) return fail(st.error());
  if (auto st = writeFileAtomically(files.caCert.string(), ca->certPem, 0644); !st) return fail(st.error());
  if (!fs::exists(files.token))
    if (auto st = writeFileAtomically(files.token.string(), *token + "\n", 0600); !st) return fail(st.error());
  return {};
}

Status publishClusterCa(Store& store, const std::string& dataDir) {
  DataDirFiles files(dataDir);
  auto token = localToken(files, {});
  if (!token) return fail(token.error());
  if (token->empty()) return fail(EINVAL, "no join token in " + files.token.string());
  auto existing = bootstrapRecord(store);
  if (!existing) return fail(existing.error());
  if (existing->empty()) {
    auto cert = readText(files.caCert), key = readText(files.caKey);
    if (!cert) return fail(cert.error());
    if (!key) return fail(key.error());
    auto sealed = seal(*token, PemPair{*cert, *key});
    if (!sealed) return fail(sealed.error());
    auto created = store.create(kClusterBootstrapKey, *sealed);
    if (created) return {};
    if (created.error().code != EEXIST) return fail(created.error().wrap("store cluster bootstrap data"));
    // Another server started on the empty datastore at the same moment and won.
    existing = bootstrapRecord(store);
    if (!existing) return fail(existing.error());
  }
  auto ca = open(*token, *existing);
  if (!ca) return fail(ca.error().wrap("another server created this cluster at the same time"));
  return checkSameCa(*ca, files);
}

}  // namespace ferry::cp
