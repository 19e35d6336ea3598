#include "agent/images/image_reference.h"

#include <cctype>

#include <fmt/format.h>

namespace ferry::images {
namespace {

bool isLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// One path component of a repository: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
bool validPathComponent(const std::string& s) {
  if (s.empty() || !isLowerAlnum(s.front()) || !isLowerAlnum(s.back())) return false;
  for (size_t i = 0; i < s.size();) {
    if (isLowerAlnum(s[i])) {
      ++i;
      continue;
    }
    // A separator run: ".", "_", "__" or any number of "-".
    size_t j = i;
    if (s[i] == '.') {
      j = i + 1;
    } else if (s[i] == '_') {
      j = i + 1;
      if (j < s.size() && s[j] == '_') ++j;
    } else if (s[i] == '-') {
      while (j < s.size() && s[j] == '-') ++j;
    } else {
      return false;
    }
    if (j >= s.size() || !isLowerAlnum(s[j])) return false;
    i = j;
  }
  return true;
}

// host[:port], host being dot-separated labels of letters, digits and inner dashes.
bool validDomain(const std::string& d) {
  std::string host = d;
  if (auto colon = d.rfind(':'); colon != std::string::npos) {
    std::string port = d.substr(colon + 1);
    if (port.empty() || port.size() > 5) return false;
    for (char c : port)
      if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    host = d.substr(0, colon);
  }
  if (host.empty()) return false;
  size_t start = 0;
  while (true) {
    size_t dot = host.find('.', start);
    std::string label = host.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (label.empty() || label.front() == '-' || label.back() == '-') return false;
    for (char c : label)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return true;
}

bool validTag(const std::string& t) {
  if (t.empty() || t.size() > 128) return false;
  auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  if (!word(t.front())) return false;
  for (char c : t)
    if (!word(c) && c != '.' && c != '-') return false;
  return true;
}

bool validDigest(const std::string& d) {
  if (d.rfind("sha256:", 0) != 0 || d.size() != 7 + 64) return false;
  for (size_t i = 7; i < d.size(); ++i)
    if (!std::isxdigit(static_cast<unsigned char>(d[i])) || std::isupper(static_cast<unsigned char>(d[i])))
      return false;
  return true;
}

}  // namespace

std::string ImageReference::name() const { return registry + "/" + repository; }

std::string ImageReference::normalized() const {
  std::string out = name();
  if (!tag.empty()) out += ":" + tag;
  if (!digest.empty()) out += "@" + digest;
  return out;
}

std::string ImageReference::manifestSelector() const { return digest.empty() ? tag : digest; }

Result<ImageReference> parseImageReference(const std::string& text) {
  auto invalid = [&](const std::string& why) {
    return fail(Error::invalid(fmt::format("invalid image reference \"{}\": {}", text, why)));
  };
  if (text.empty()) return invalid("empty");
  for (char c : text)
    if (std::isspace(static_cast<unsigned char>(c)) || !std::isprint(static_cast<unsigned char>(c)))
      return invalid("contains whitespace or control characters");

  ImageReference ref;
  std::string rest = text;
  if (auto at = rest.find('@'); at != std::string::npos) {
    ref.digest = rest.substr(at + 1);
    rest = rest.substr(0, at);
    if (!validDigest(ref.digest)) return invalid(fmt::format("digest \"{}\" is not sha256:<64 lowercase hex>", ref.digest));
  }
  // The tag follows the last ':' after the last '/' (a ':' before that is a registry port).
  size_t lastSlash = rest.rfind('/');
  size_t colon = rest.rfind(':');
  if (colon != std::string::npos && (lastSlash == std::string::npos || colon > lastSlash)) {
    ref.tag = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
    if (!validTag(ref.tag)) return invalid(fmt::format("tag \"{}\" is not valid", ref.tag));
  }
  if (rest.empty()) return invalid("no repository name");

  // The first component is a registry when it looks like a host: has '.' or ':', is
  // "localhost", or has uppercase letters (never valid in a repository).
  std::string path = rest;
  size_t slash = rest.find('/');
  if (slash != std::string::npos) {
    std::string first = rest.substr(0, slash);
    bool hasUpper = false;
    for (char c : first) hasUpper |= std::isupper(static_cast<unsigned char>(c)) != 0;
    if (first.find_first_of(".:") != std::string::npos || first == "localhost" || hasUpper) {
      if (!validDomain(first)) return invalid(fmt::format("registry \"{}\" is not a valid host[:port]", first));
      ref.registry = first;
      path = rest.substr(slash + 1);
    }
  }
  if (ref.registry.empty() || ref.registry == "index.docker.io") ref.registry = "docker.io";
  if (ref.registry == "docker.io" && path.find('/') == std::string::npos) path = "library/" + path;

  size_t start = 0;
  while (true) {
    size_t next = path.find('/', start);
    std::string component = path.substr(start, next == std::string::npos ? std::string::npos : next - start);
    if (!validPathComponent(component)) {
      bool upper = false;
      for (char c : component) upper |= std::isupper(static_cast<unsigned char>(c)) != 0;
      return invalid(upper ? "repository name must be lowercase"
                           : fmt::format("repository component \"{}\" is not valid", component));
    }
    if (next == std::string::npos) break;
    start = next + 1;
  }
  ref.repository = path;
  if (ref.name().size() > 255) return invalid("repository name longer than 255 characters");
  if (ref.tag.empty() && ref.digest.empty()) ref.tag = "latest";
  return ref;
}

PullPolicy defaultPullPolicy(const std::string& reference) {
  auto ref = parseImageReference(reference);
  if (!ref) return PullPolicy::IfNotPresent;
  // parseImageReference fills "latest" only when neither tag nor digest was given.
  return ref->tag == "latest" ? PullPolicy::Always : PullPolicy::IfNotPresent;
}

Result<PullPolicy> parsePullPolicy(const std::string& text) {
  if (text == "Always") return PullPolicy::Always;
  if (text == "IfNotPresent") return PullPolicy::IfNotPresent;
  if (text == "Never") return PullPolicy::Never;
  return fail(Error::invalid(fmt::format("imagePullPolicy \"{}\": must be Always, IfNotPresent or Never", text)));
}

const char* pullPolicyName(PullPolicy policy) {
  switch (policy) {
    case PullPolicy::Always: return "Always";
    case PullPolicy::IfNotPresent: return "IfNotPresent";
    case PullPolicy::Never: return "Never";
  }
  return "IfNotPresent";
}

}  // namespace ferry::images
