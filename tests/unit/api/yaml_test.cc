#include "api/yaml.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

using ferry::api::Json;
using ferry::api::parseYaml;
using ferry::api::parseYamlDocuments;

TEST(Yaml, TypesScalarsLikeKubernetes) {
  auto doc = parseYaml(R"(
quoted: "123"
single: 'true'
int: 123
negative: -7
hex: 0x1F
octal: 0755
float: 1.5
exp: 1e3
integralFloat: 2.0
yes: yes
onValue: on
off: off
t: True
nval: n
nul: null
tilde: ~
empty:
str: hello world
version: 1.26.0
tagged: !!str 42
taggedInt: !!int "42"
big: 18446744073709551615
date: 2024-01-01
mode: 0644
under: 1_000
)");
  ASSERT_TRUE(doc) << doc.error().message;
  const Json& d = *doc;
  EXPECT_EQ(d["quoted"], "123");
  EXPECT_EQ(d["single"], "true");
  EXPECT_EQ(d["int"], 123);
  EXPECT_TRUE(d["int"].is_number_integer());
  EXPECT_EQ(d["negative"], -7);
  EXPECT_EQ(d["hex"], 31);
  EXPECT_EQ(d["octal"], 493);
  EXPECT_EQ(d["float"], 1.5);
  EXPECT_EQ(d["exp"], 1000);
  EXPECT_TRUE(d["exp"].is_number_integer());
  EXPECT_TRUE(d["integralFloat"].is_number_integer());
  EXPECT_EQ(d["true"], true);  // the key "yes" is itself a boolean, printed as "true"
  EXPECT_EQ(d["false"], false);  // "off" key
  EXPECT_EQ(d["t"], true);
  EXPECT_EQ(d["onValue"], true);
  EXPECT_EQ(d["nval"], false);
  EXPECT_TRUE(d["nul"].is_null());
  EXPECT_TRUE(d["tilde"].is_null());
  EXPECT_TRUE(d["empty"].is_null());
  EXPECT_EQ(d["str"], "hello world");
  EXPECT_EQ(d["version"], "1.26.0");
  EXPECT_EQ(d["tagged"], "42");
  EXPECT_EQ(d["taggedInt"], 42);
  EXPECT_EQ(d["big"].get<std::uint64_t>(), 18446744073709551615ULL);
  EXPECT_EQ(d["date"], "2024-01-01");
  EXPECT_EQ(d["mode"], 420);
  EXPECT_EQ(d["under"], 1000);
}

TEST(Yaml, MultiDocumentManifest) {
  auto docs = parseYamlDocuments(R"(---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  template:
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
        args: ["--port", "80"]
---
# only a comment
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ports: [{port: 80, targetPort: 80}]
...
)");
  ASSERT_TRUE(docs) << docs.error().message;
  ASSERT_EQ(docs->size(), 2u);
  EXPECT_EQ((*docs)[0]["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"], 80);
  EXPECT_EQ((*docs)[0]["spec"]["template"]["spec"]["containers"][0]["args"][1], "80");
  EXPECT_EQ((*docs)[1]["kind"], "Service");
  EXPECT_TRUE(parseYamlDocuments("")->empty());
  EXPECT_TRUE(parseYaml("")->is_null());
  EXPECT_FALSE(parseYaml("a: 1\n---\nb: 2\n"));
}

TEST(Yaml, AcceptsJsonAndAnchors) {
  auto j = parseYaml(R"({"a": [1, 2, {"b": null}], "c": "d"})");
  ASSERT_TRUE(j);
  EXPECT_EQ(*j, Json::parse(R"({"a": [1, 2, {"b": null}], "c": "d"})"));
  auto anchors = parseYaml("base: &b {x: 1}\ncopy: *b\n");
  ASSERT_TRUE(anchors);
  EXPECT_EQ((*anchors)["copy"]["x"], 1);
}

TEST(Yaml, ErrorsNameTheLine) {
  auto bad = parseYaml("a: 1\nb: [1, 2\nc: 3\n");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("yaml: line"), std::string::npos) << bad.error().message;
  auto dup = parseYaml("a: 1\nb: 2\na: 3\n");
  ASSERT_FALSE(dup);
  EXPECT_NE(dup.error().message.find("line 3"), std::string::npos) << dup.error().message;
  EXPECT_NE(dup.error().message.find("\"a\" already defined"), std::string::npos);
  auto tabs = parseYaml("a:\n\t- b\n");
  EXPECT_FALSE(tabs);
  auto latin1 = parseYaml("a: 1\nb: caf\xe9\n");
  ASSERT_FALSE(latin1);
  EXPECT_NE(latin1.error().message.find("line 2: invalid UTF-8"), std::string::npos) << latin1.error().message;
  EXPECT_TRUE(parseYaml("b: caf\xc3\xa9 \xf0\x9f\x9a\xa2\n"));
  EXPECT_FALSE(parseYaml("b: \xed\xa0\x80\n"));  // a UTF-16 surrogate
  EXPECT_FALSE(parseYaml(std::string("a\0\0\0: 1\n", 8)));  // NULs would make yaml-cpp guess UTF-32
  EXPECT_EQ((*parseYaml("a: \"\\xff\""))["a"], "\xc3\xbf");  // \\xff is U+00FF
  EXPECT_EQ((*parseYaml("a: \"\\a\\t\""))["a"], "\a\t");  // escaped control characters are fine
  auto inf = parseYaml("a: .inf\n");
  EXPECT_FALSE(inf);
  auto huge = parseYaml("args: [1, 1e4422222223222]\n");  // found by yaml_fuzz: read as infinity
  ASSERT_FALSE(huge);
  EXPECT_NE(huge.error().message.find("out of range"), std::string::npos) << huge.error().message;
  EXPECT_FALSE(parseYaml("a: !!float -1e999\n"));
  std::string deep(1000, '[');
  EXPECT_FALSE(parseYaml(deep + std::string(1000, ']')));
}

// yaml-cpp 0.7's LoadAll alone never returns on these (found by yaml_fuzz): an
// empty document reported again and again without consuming input.
TEST(Yaml, StreamsTheParserCannotGetThroughAreRefused) {
  for (std::string text : {std::string(","), std::string(", 0x1F,   a  copiVersmmioan"), std::string("a: 1\n---\n,\n")}) {
    auto r = parseYamlDocuments(text);
    ASSERT_FALSE(r) << text;
    EXPECT_NE(r.error().message.find("yaml:"), std::string::npos) << r.error().message;
  }
  auto fine = parseYamlDocuments("a: 1\n---\n---\nb: 2\n...\n");
  ASSERT_TRUE(fine) << fine.error().message;
  EXPECT_EQ(fine->size(), 2u);
}

TEST(Yaml, BillionLaughsIsRefused) {
  std::string text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  char prev = 'a';
  for (char c = 'b'; c <= 'j'; ++c) {
    text += fmt::format("{}: &{} [*{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}]\n", c, c, prev, prev, prev, prev,
                        prev, prev, prev, prev, prev, prev);
    prev = c;
  }
  auto r = parseYaml(text);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("too many nodes"), std::string::npos);
}

TEST(Yaml, WritesYamlThatReadsBackIdentically) {
  for (const char* marker : {"--- a000*", "---", "...", "... x"}) {  // found by yaml_fuzz
    auto back = parseYaml(ferry::api::toYaml(Json(marker)));
    ASSERT_TRUE(back) << marker << ": " << back.error().message;
    EXPECT_EQ(*back, Json(marker)) << ferry::api::toYaml(Json(marker));
  }
  Json doc = Json::parse(R"({
    "apiVersion": "v1", "kind": "ConfigMap",
    "metadata": {"name": "cfg", "labels": {"version": "1.0", "enabled": "true", "n": "123", "empty": ""}},
    "data": {"script": "line one\nline two\n", "yes": "no", "colon": "a: b", "hash": "# x", "null": "null",
             "tilde": "~", "lead": " space", "num": "0x10", "dash": "-", "star": "*x", "quote": "\"q\""},
    "list": [1, 2.5, true, null, [], {}, "s", -3, 1e300],
    "nested": [{"a": [{"b": 1}]}]
  })");
  std::string text = ferry::api::toYaml(doc);
  auto back = parseYaml(text);
  ASSERT_TRUE(back) << back.error().message << "\n" << text;
  EXPECT_EQ(*back, doc) << text;

  // Strings that a "|" block would not carry exactly.
  for (const char* tricky : {"metadata?\n(       | multi n'  tspec\x1b\x0e", "a\nb", "a\n\n", " lead\nx\n", "x\n  y\n",
                             "tab\there", "\n", "trail \nx\n", "bell\x07", "del\x7f", "q\"uote\\"}) {
    Json s = Json{{"v", tricky}};
    auto again = parseYaml(ferry::api::toYaml(s));
    ASSERT_TRUE(again) << again.error().message;
    EXPECT_EQ(*again, s) << ferry::api::toYaml(s);
  }

  std::vector<Json> docs{Json::parse(R"({"a":1})"), Json::parse(R"({"b":"2"})")};
  auto many = parseYamlDocuments(ferry::api::toYamlDocuments(docs));
  ASSERT_TRUE(many);
  EXPECT_EQ(*many, docs);
}

TEST(Json, ParseErrorsArePositioned) {
  auto ok = ferry::api::parseJson(R"({"a":1})");
  ASSERT_TRUE(ok);
  auto bad = ferry::api::parseJson("{\"a\":\n1,}");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("line 2"), std::string::npos) << bad.error().message;
}
