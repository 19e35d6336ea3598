#include "controlplane-lite/certs.h"

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <sys/stat.h>

namespace ferry::cp {

namespace {

namespace fs = std::filesystem;

template <class T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using CertPtr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using BioPtr = std::unique_ptr<BIO, decltype([](BIO* b) { BIO_free_all(b); })>;

Result<std::string> readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return failErrno("read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Status writeFile(const std::string& path, const std::string& content, mode_t mode) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return failErrno("write " + tmp);
    out << content;
    if (!out.flush()) return failErrno("write " + tmp);
  }
  if (::chmod(tmp.c_str(), mode) != 0) return failErrno("chmod " + tmp);
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return fail(ec.value(), "rename " + tmp + ": " + ec.message());
  return {};
}

std::string bioToString(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<std::size_t>(len));
}

Result<KeyPtr> newKey() {
  KeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return fail(EIO, "generate EC P-256 key");
  return key;
}

std::string keyToPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  return bioToString(bio.get());
}

std::string certToPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  return bioToString(bio.get());
}

Result<KeyPtr> keyFromPem(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  KeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return fail(EINVAL, "parse private key");
  return key;
}

Result<CertPtr> certFromPem(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  CertPtr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) return fail(EINVAL, "parse certificate");
  return cert;
}

Status addExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (!ext) return fail(EINVAL, fmt::format("certificate extension {}={}", OBJ_nid2sn(nid), value));
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return {};
}

void setRandomSerial(X509* cert) {
  unsigned char bytes[16];
  RAND_bytes(bytes, sizeof bytes);
  bytes[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(bytes, sizeof bytes, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert));
  BN_free(bn);
}

void setSubject(X509_NAME* name, const std::string& commonName, const std::vector<std::string>& organizations) {
  for (const auto& o : organizations)
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(o.c_str()), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(commonName.c_str()), -1,
                             -1, 0);
}

Result<PemPair> makeCa() {
  auto key = newKey();
  if (!key) return fail(key.error());
  CertPtr cert(X509_new());
  X509_set_version(cert.get(), 2);
  setRandomSerial(cert.get());
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 60L * 60 * 24 * 3650);
  X509_set_pubkey(cert.get(), key->get());
  setSubject(X509_get_subject_name(cert.get()), fmt::format("ferry-ca@{}", time(nullptr)), {});
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  for (auto [nid, value] : {std::pair{NID_basic_constraints, "critical,CA:TRUE"},
                            std::pair{NID_key_usage, "critical,digitalSignature,keyEncipherment,keyCertSign"},
                            std::pair{NID_subject_key_identifier, "hash"}}) {
    if (auto st = addExtension(cert.get(), cert.get(), nid, value); !st) return fail(st.error());
  }
  if (X509_sign(cert.get(), key->get(), EVP_sha256()) == 0) return fail(EIO, "self-sign CA certificate");
  return PemPair{certToPem(cert.get()), keyToPem(key->get())};
}

// Loads a pair from <dir>/<name>.{crt,key}, or makes one with `make` and writes it.
template <class Make>
Result<PemPair> loadOrMake(const std::string& dir, const std::string& name, Make make) {
  std::string crt = dir + "/" + name + ".crt", key = dir + "/" + name + ".key";
  if (fs::exists(crt) && fs::exists(key)) {
    auto c = readFile(crt);
    if (!c) return fail(c.error());
    auto k = readFile(key);
    if (!k) return fail(k.error());
    return PemPair{*c, *k};
  }
  Result<PemPair> made = make();
  if (!made) return fail(made.error().wrap("create " + name + " certificate"));
  if (auto st = writeFile(key, made->keyPem, 0600); !st) return fail(st.error());
  if (auto st = writeFile(crt, made->certPem, 0644); !st) return fail(st.error());
  return made;
}

std::string base64(const std::string& in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

}  // namespace

Result<PemPair> makeCertificateAuthority() { return makeCa(); }

std::string randomHex(std::size_t bytes) {
  std::string raw(bytes, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes));
  std::string out;
  for (unsigned char c : raw) out += fmt::format("{:02x}", c);
  return out;
}

Result<PemPair> issueCertificate(const PemPair& ca, const std::string& commonName,
                                 const std::vector<std::string>& organizations, const SubjectAltNames& sans,
                                 bool serverAuth, int validDays) {
  auto caKey = keyFromPem(ca.keyPem);
  if (!caKey) return fail(caKey.error().wrap("CA key"));
  auto caCert = certFromPem(ca.certPem);
  if (!caCert) return fail(caCert.error().wrap("CA certificate"));
  auto key = newKey();
  if (!key) return fail(key.error());
  CertPtr cert(X509_new());
  X509_set_version(cert.get(), 2);
  setRandomSerial(cert.get());
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 60L * 60 * 24 * validDays);
  X509_set_pubkey(cert.get(), key->get());
  setSubject(X509_get_subject_name(cert.get()), commonName, organizations);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(caCert->get()));
  std::vector<std::pair<int, std::string>> exts = {
      {NID_basic_constraints, "critical,CA:FALSE"},
      {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
      {NID_ext_key_usage, serverAuth ? "serverAuth" : "clientAuth"},
      {NID_authority_key_identifier, "keyid:always"},
  };
  std::string alt;
  for (const auto& d : sans.dnsNames) alt += (alt.empty() ? "" : ",") + ("DNS:" + d);
  for (const auto& ip : sans.ips) alt += (alt.empty() ? "" : ",") + ("IP:" + ip);
  if (!alt.empty()) exts.push_back({NID_subject_alt_name, alt});
  for (const auto& [nid, value] : exts)
    if (auto st = addExtension(cert.get(), caCert->get(), nid, value); !st) return fail(st.error());
  if (X509_sign(cert.get(), caKey->get(), EVP_sha256()) == 0) return fail(EIO, "sign certificate");
  return PemPair{certToPem(cert.get()), keyToPem(key->get())};
}

std::string makeKubeconfig(const std::string& serverUrl, const std::string& caPem, const PemPair& client,
                           const std::string& userName) {
  return fmt::format(R"(apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: {}
    server: {}
  name: ferry
contexts:
- context:
    cluster: ferry
    user: {}
  name: ferry
current-context: ferry
preferences: {{}}
users:
- name: {}
  user:
    client-certificate-data: {}
    client-key-data: {}
)",
                     base64(caPem), serverUrl, userName, userName, base64(client.certPem), base64(client.keyPem));
}

Result<ClusterCredentials> ensureClusterCredentials(const std::string& dataDir, const SubjectAltNames& sans,
                                                    const std::string& serverUrl) {
  ClusterCredentials creds;
  creds.tlsDir = dataDir + "/tls";
  std::error_code ec;
  fs::create_directories(creds.tlsDir, ec);
  if (ec) return fail(ec.value(), "create " + creds.tlsDir + ": " + ec.message());
  ::chmod(creds.tlsDir.c_str(), 0700);

  auto ca = loadOrMake(creds.tlsDir, "ca", [] { return makeCa(); });
  if (!ca) return fail(ca.error());
  creds.ca = *ca;
  auto serving = loadOrMake(creds.tlsDir, "server", [&] {
    return issueCertificate(creds.ca, "ferry-server", {}, sans, true, 3650);
  });
  if (!serving) return fail(serving.error());
  creds.serving = *serving;
  auto admin = loadOrMake(creds.tlsDir, "admin", [&] {
    return issueCertificate(creds.ca, "admin", {"system:masters"}, {}, false, 3650);
  });
  if (!admin) return fail(admin.error());
  creds.admin = *admin;

  std::string tokenPath = dataDir + "/token";
  if (fs::exists(tokenPath)) {
    auto t = readFile(tokenPath);
    if (!t) return fail(t.error());
    creds.joinToken = *t;
    while (!creds.joinToken.empty() && (creds.joinToken.back() == '\n' || creds.joinToken.back() == ' '))
      creds.joinToken.pop_back();
  } else {
    creds.joinToken = "F10" + randomHex(24);
    if (auto st = writeFile(tokenPath, creds.joinToken + "\n", 0600); !st) return fail(st.error());
  }
  // The kubeconfig is rewritten each start so that it names the current listen port.
  if (auto st = writeFile(dataDir + "/kubeconfig", makeKubeconfig(serverUrl, creds.ca.certPem, creds.admin, "admin"),
                          0600);
      !st)
    return fail(st.error());
  return creds;
}

}  // namespace ferry::cp
