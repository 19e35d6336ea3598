// Document codecs: YAML (multi-document, typed the way kubectl/Kubernetes read
// it) to JSON, JSON to YAML for Ferry's own files, and a checked JSON parse.
#pragma once

#include "api/error.h"
#include "api/object.h"

#include <string>
#include <string_view>
#include <vector>

namespace ferry::api {

// Parses JSON text; the error names the line and column.
Result<Json> parseJson(std::string_view text);

// Every non-empty document of a YAML stream ("---" separated), as JSON.
// Plain scalars are typed like Kubernetes' YAML reader (YAML 1.1 rules of
// go-yaml v2): null/~/empty -> null; true/false/yes/no/on/off/y/n -> bool;
// 10, 0x1F, 0o17, 0755 -> integer; 1.5, 1e3 -> number (integral values become
// integers, as Go's JSON encoding of float64 makes them); quoted scalars
// and !!str stay strings. Duplicate keys are an error. Errors name the line.
Result<std::vector<Json>> parseYamlDocuments(std::string_view text);
// Exactly one document (an empty stream gives null).
Result<Json> parseYaml(std::string_view text);

// Block-style YAML whose re-reading gives back `doc` (strings that would be
// read as another type are quoted).
std::string toYaml(const Json& doc);
// Several documents separated by "---".
std::string toYamlDocuments(const std::vector<Json>& docs);

}  // namespace ferry::api
