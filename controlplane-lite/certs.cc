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
#include <ctime>
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

using ReqPtr = std::unique_ptr<X509_REQ, Deleter<X509_REQ, X509_REQ_free>>;

Result<ReqPtr> requestFromPem(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  ReqPtr req(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  if (!req) return fail(EINVAL, "parse certificate request (want a PEM \"CERTIFICATE REQUEST\")");
  return req;
}

std::string altNames(const SubjectAltNames& sans) {
  std::string alt;
  for (const auto& d : sans.dnsNames) alt += (alt.empty() ? "" : ",") + ("DNS:" + d);
  for (const auto& ip : sans.ips) alt += (alt.empty() ? "" : ",") + ("IP:" + ip);
  return alt;
}

void readSubject(X509_NAME* name, std::string& commonName, std::vector<std::string>& organizations) {
  for (int i = 0; i < X509_NAME_entry_count(name); ++i) {
    X509_NAME_ENTRY* e = X509_NAME_get_entry(name, i);
    int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(e));
    ASN1_STRING* data = X509_NAME_ENTRY_get_data(e);
    std::string value(reinterpret_cast<const char*>(ASN1_STRING_get0_data(data)), static_cast<std::size_t>(ASN1_STRING_length(data)));
    if (nid == NID_commonName) commonName = value;
    if (nid == NID_organizationName) organizations.push_back(value);
  }
}

void readAltNames(GENERAL_NAMES* names, SubjectAltNames& out, int& other) {
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
    if (n->type == GEN_DNS) {
      const ASN1_STRING* s = n->d.dNSName;
      out.dnsNames.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), static_cast<std::size_t>(ASN1_STRING_length(s)));
    } else if (n->type == GEN_IPADD && n->d.iPAddress->length == 4) {
      const unsigned char* b = n->d.iPAddress->data;
      out.ips.push_back(fmt::format("{}.{}.{}.{}", b[0], b[1], b[2], b[3]));
    } else {
      ++other;  // IPv6, e-mail, URI, ...: Ferry's node certificates never carry them
    }
  }
}

std::int64_t asn1TimeToUnix(const ASN1_TIME* t) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return static_cast<std::int64_t>(timegm(&tm));
}

// A certificate for `publicKey`, signed by the CA.
Result<std::string> signPublicKey(const PemPair& ca, EVP_PKEY* publicKey, const std::string& commonName,
                                  const std::vector<std::string>& organizations, const SubjectAltNames& sans,
                                  bool serverAuth, int validDays) {
  auto caKey = keyFromPem(ca.keyPem);
  if (!caKey) return fail(caKey.error().wrap("CA key"));
  auto caCert = certFromPem(ca.certPem);
  if (!caCert) return fail(caCert.error().wrap("CA certificate"));
  CertPtr cert(X509_new());
  X509_set_version(cert.get(), 2);
  setRandomSerial(cert.get());
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 60L * 60 * 24 * validDays);
  X509_set_pubkey(cert.get(), publicKey);
  setSubject(X509_get_subject_name(cert.get()), commonName, organizations);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(caCert->get()));
  std::vector<std::pair<int, std::string>> exts = {
      {NID_basic_constraints, "critical,CA:FALSE"},
      {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
      {NID_ext_key_usage, serverAuth ? "serverAuth" : "clientAuth"},
      {NID_authority_key_identifier, "keyid:always"},
  };
  if (std::string alt = altNames(sans); !alt.empty()) exts.push_back({NID_subject_alt_name, alt});
  for (const auto& [nid, value] : exts)
    if (auto st = addExtension(cert.get(), caCert->get(), nid, value); !st) return fail(st.error());
  if (X509_sign(cert.get(), caKey->get(), EVP_sha256()) == 0) return fail(EIO, "sign certificate");
  return certToPem(cert.get());
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
  auto key = newKey();
  if (!key) return fail(key.error());
  auto cert = signPublicKey(ca, key->get(), commonName, organizations, sans, serverAuth, validDays);
  if (!cert) return fail(cert.error());
  return PemPair{*cert, keyToPem(key->get())};
}

Result<CertificateRequest> makeCertificateRequest(const std::string& commonName,
                                                  const std::vector<std::string>& organizations,
                                                  const SubjectAltNames& sans) {
  auto key = newKey();
  if (!key) return fail(key.error());
  ReqPtr req(X509_REQ_new());
  X509_REQ_set_version(req.get(), 0);
  setSubject(X509_REQ_get_subject_name(req.get()), commonName, organizations);
  X509_REQ_set_pubkey(req.get(), key->get());
  std::string alt = altNames(sans);
  if (!alt.empty()) {
    STACK_OF(X509_EXTENSION)* exts = sk_X509_EXTENSION_new_null();
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, nullptr, nullptr, req.get(), nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, alt.c_str());
    if (!ext) {
      sk_X509_EXTENSION_free(exts);
      return fail(EINVAL, "certificate request subjectAltName " + alt);
    }
    sk_X509_EXTENSION_push(exts, ext);
    X509_REQ_add_extensions(req.get(), exts);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  }
  if (X509_REQ_sign(req.get(), key->get(), EVP_sha256()) == 0) return fail(EIO, "sign certificate request");
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_REQ(bio.get(), req.get());
  return CertificateRequest{bioToString(bio.get()), keyToPem(key->get())};
}

Result<RequestedSubject> parseCertificateRequest(const std::string& csrPem) {
  auto req = requestFromPem(csrPem);
  if (!req) return fail(req.error());
  KeyPtr key(X509_REQ_get_pubkey(req->get()));
  if (!key) return fail(EINVAL, "certificate request has no public key");
  if (X509_REQ_verify(req->get(), key.get()) != 1)
    return fail(EINVAL, "certificate request signature does not match its public key");
  RequestedSubject out;
  readSubject(X509_REQ_get_subject_name(req->get()), out.commonName, out.organizations);
  STACK_OF(X509_EXTENSION)* exts = X509_REQ_get_extensions(req->get());
  if (exts) {
    int at = X509v3_get_ext_by_NID(exts, NID_subject_alt_name, -1);
    if (at >= 0) {
      auto* names = static_cast<GENERAL_NAMES*>(X509V3_EXT_d2i(X509v3_get_ext(exts, at)));
      readAltNames(names, out.sans, out.otherSans);
      GENERAL_NAMES_free(names);
    }
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  }
  return out;
}

Result<std::string> signCertificateRequest(const PemPair& ca, const std::string& csrPem, const std::string& commonName,
                                           const std::vector<std::string>& organizations, const SubjectAltNames& sans,
                                           bool serverAuth, int validDays) {
  auto req = requestFromPem(csrPem);
  if (!req) return fail(req.error());
  KeyPtr key(X509_REQ_get_pubkey(req->get()));
  if (!key || X509_REQ_verify(req->get(), key.get()) != 1)
    return fail(EINVAL, "certificate request signature does not match its public key");
  return signPublicKey(ca, key.get(), commonName, organizations, sans, serverAuth, validDays);
}

Result<CertificateFacts> inspectCertificate(const std::string& certPem) {
  auto cert = certFromPem(certPem);
  if (!cert) return fail(cert.error());
  CertificateFacts facts;
  readSubject(X509_get_subject_name(cert->get()), facts.commonName, facts.organizations);
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert->get(), NID_subject_alt_name, nullptr, nullptr));
  int other = 0;
  readAltNames(names, facts.sans, other);
  GENERAL_NAMES_free(names);
  facts.notBefore = asn1TimeToUnix(X509_get0_notBefore(cert->get()));
  facts.notAfter = asn1TimeToUnix(X509_get0_notAfter(cert->get()));
  return facts;
}

Status verifyCertificate(const std::string& certPem, const std::string& caPem, const std::string& keyPem) {
  auto cert = certFromPem(certPem);
  if (!cert) return fail(cert.error());
  auto ca = certFromPem(caPem);
  if (!ca) return fail(ca.error().wrap("CA"));
  std::unique_ptr<X509_STORE, Deleter<X509_STORE, X509_STORE_free>> store(X509_STORE_new());
  X509_STORE_add_cert(store.get(), ca->get());
  std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX, X509_STORE_CTX_free>> ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), cert->get(), nullptr);
  if (X509_verify_cert(ctx.get()) != 1)
    return fail(EKEYREJECTED, fmt::format("certificate not valid for the cluster CA: {}",
                                          X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()))));
  if (!keyPem.empty()) {
    auto key = keyFromPem(keyPem);
    if (!key) return fail(key.error());
    if (X509_check_private_key(cert->get(), key->get()) != 1)
      return fail(EKEYREJECTED, "the private key does not belong to the certificate");
  }
  return {};
}

Status writeFileAtomically(const std::string& path, const std::string& content, unsigned mode) {
  return writeFile(path, content, static_cast<mode_t>(mode));
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
