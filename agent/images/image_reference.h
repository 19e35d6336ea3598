// Image references ("busybox", "registry:5000/team/app:1.2@sha256:...") parsed and
// normalized the way Docker and Kubernetes do, and the runtime-side pull policy default.
#pragma once

#include <string>

#include "api/error.h"

namespace ferry::images {

struct ImageReference {
  std::string registry;    // "docker.io", "127.0.0.1:5000"
  std::string repository;  // "library/busybox", "team/app"
  std::string tag;         // "1.36"; "latest" when neither tag nor digest was given
  std::string digest;      // "sha256:<64 hex>" or empty

  // "docker.io/library/busybox:1.36", "127.0.0.1:5000/app@sha256:..." (tag and digest
  // both kept when both were given).
  std::string normalized() const;
  // "docker.io/library/busybox" — the name without tag or digest.
  std::string name() const;
  // What a registry's manifest endpoint is asked for: the digest when given, else the tag.
  std::string manifestSelector() const;
};

// Fails with a message naming what is wrong (empty, uppercase repository, bad tag,
// bad digest...). The agent reports such failures as InvalidImageName.
Result<ImageReference> parseImageReference(const std::string& text);

enum class PullPolicy { Always, IfNotPresent, Never };

// Kubernetes' defaulting: Always when the tag is "latest" or neither tag nor digest
// is given, else IfNotPresent. An unparsable reference gets IfNotPresent (the pull
// then fails with InvalidImageName anyway).
PullPolicy defaultPullPolicy(const std::string& reference);

// "Always" | "IfNotPresent" | "Never" (the API strings) to the enum and back.
Result<PullPolicy> parsePullPolicy(const std::string& text);
const char* pullPolicyName(PullPolicy policy);

}  // namespace ferry::images
