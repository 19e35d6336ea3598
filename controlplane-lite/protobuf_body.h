// Request bodies in Kubernetes' protobuf encoding (Content-Type
// application/vnd.kubernetes.protobuf), which stock kubectl's typed `create`
// subcommands send (`kubectl create configmap|secret|namespace|deployment|
// service|serviceaccount`, `kubectl autoscale`) with no JSON fallback on 415. Decoded to the JSON
// object they stand for; the server then handles it like a JSON body and
// answers in JSON, which kubectl accepts.
//
// The wire form: the magic "k8s\0", then a runtime.Unknown message
// {1: typeMeta {1: apiVersion, 2: kind}, 2: raw, 3: contentEncoding, 4: contentType},
// where `raw` is the kind's own message (k8s.io/api generated.proto).
// Ferry knows the messages of ConfigMap, Secret, Namespace, ServiceAccount,
// Service, Deployment and autoscaling/v2 HorizontalPodAutoscaler (field tables written from the published
// generated.proto field numbers). A field it has no table entry for is
// accepted only when it carries its zero value (Go writes every non-pointer
// field), never silently dropped.
#pragma once

#include "api/error.h"
#include "api/object.h"

#include <string_view>

namespace ferry::cp {

// EBADMSG (400) for a malformed body or a set field Ferry does not know, naming
// the message and field; ENOTSUP (415) for a kind without a table.
Result<api::Json> decodeProtobufObject(std::string_view body);

}  // namespace ferry::cp
