// The field sets of server-side apply (metadata.managedFields[].fieldsV1):
// which fields a manager set, so that an apply by another manager that
// changes one of them is a conflict.
#pragma once

#include "api/object.h"

#include <string>
#include <string_view>
#include <vector>

namespace ferry::api {

// fieldsV1 describing every field set in `object` of `resource` ("pods",
// "deployments.apps", ... as in defaulting.h):
//   {"f:metadata":{"f:labels":{"f:app":{}}},
//    "f:spec":{"f:containers":{"k:{\"name\":\"web\"}":{".":{},"f:image":{}}}}}
// Lists with a patch merge key (api/patch.h) give one "k:" entry per element;
// other lists are owned as a whole. Identity and server-set metadata
// (name, namespace, uid, resourceVersion, ...) and patch directives are left out.
Json fieldSetOf(std::string_view resource, const Json& object);

// Leaf paths of a fieldsV1 set, e.g. "f:spec/f:replicas".
std::vector<std::string> fieldSetLeaves(const Json& fieldsV1);

// `doc` without the strategic merge patch directives ($patch,
// $setElementOrder/..., $retainKeys, $deleteFromPrimitiveList/...).
Json stripDirectives(const Json& doc);

}  // namespace ferry::api
