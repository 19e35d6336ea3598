// Strategic merge patch (what `kubectl apply` sends) and the field sets of
// server-side apply. Lists of objects merge by their Kubernetes patch merge key
// (containers/env/volumes by name, container ports by containerPort, service
// ports by port, conditions by type, ...); the directives $patch
// (replace|delete|merge), $setElementOrder/<list>, $retainKeys and
// $deleteFromPrimitiveList/<list> are honoured.
#pragma once

#include "api/error.h"
#include "api/object.h"

namespace ferry::cp {

Result<api::Json> strategicMergePatch(const api::Json& original, const api::Json& patch);

// managedFields "fieldsV1" describing every field set in `object`
// ({"f:metadata":{"f:labels":{"f:app":{}}}, "f:spec":{"f:containers":{"k:{\"name\":\"web\"}":{...}}}}).
api::Json fieldSetOf(const api::Json& object);

// Leaf paths of a fieldsV1 set, e.g. "f:spec/f:replicas".
std::vector<std::string> fieldSetLeaves(const api::Json& fieldsV1);

// Removes every directive key ($patch, $setElementOrder/..., ...) from a document.
api::Json stripDirectives(const api::Json& doc);

}  // namespace ferry::cp
