// The three patch formats of the Kubernetes API: JSON merge patch
// (application/merge-patch+json), JSON patch (application/json-patch+json)
// and strategic merge patch (application/strategic-merge-patch+json, what
// `kubectl apply`, `set image` and `rollout restart` send).
#pragma once

#include "api/error.h"
#include "api/object.h"

#include <string>
#include <string_view>
#include <vector>

namespace ferry::api {

// RFC 7386: objects merge recursively, null deletes a key, anything else replaces.
Result<Json> jsonMergePatch(const Json& target, const Json& patch);

// RFC 6902: a list of add/remove/replace/move/copy/test operations applied in
// order; the first failing operation fails the whole patch (error names its index).
Result<Json> jsonPatch(const Json& target, const Json& operations);

// Kubernetes' strategic merge patch for `resource` ("pods", "deployments.apps",
// ... as in defaulting.h). Lists merge by their patch merge key where the
// Kubernetes types declare one (containers/volumes/env by name, container
// ports by containerPort, service ports by port, volumeMounts by mountPath,
// conditions by type, ...); other lists are replaced. Supports the
// directives $patch (delete|replace|merge), $setElementOrder/<list>,
// $retainKeys and $deleteFromPrimitiveList/<list>; null deletes a key.
Result<Json> strategicMergePatch(std::string_view resource, const Json& original, const Json& patch);

// The patch merge key Kubernetes declares for the list of objects at `path`
// (field names from the object's root; list elements are not steps, so
// {"spec","template","spec","containers"} and then {...,"containers","ports"})
// of `resource`: "name", "containerPort", ... ; "" for a list replaced as a
// whole (atomic), a set of scalars, or a field Ferry has no schema for.
std::string listMergeKey(std::string_view resource, const std::vector<std::string>& path);

}  // namespace ferry::api
