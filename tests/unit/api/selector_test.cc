#include "api/selector.h"

#include <gtest/gtest.h>

using ferry::api::FieldSelector;
using ferry::api::Json;
using ferry::api::Labels;
using ferry::api::LabelSelector;

namespace {
bool sel(const char* text, const Labels& labels) {
  auto s = LabelSelector::parse(text);
  EXPECT_TRUE(s.has_value()) << text << ": " << (s ? "" : s.error().message);
  return s && s->matches(labels);
}
}  // namespace

TEST(LabelSelector, StringFormEqualityAndSets) {
  Labels web{{"app", "web"}, {"tier", "frontend"}, {"env", "a"}};
  EXPECT_TRUE(sel("", web));
  EXPECT_TRUE(sel("app=web", web));
  EXPECT_TRUE(sel("app==web", web));
  EXPECT_FALSE(sel("app=db", web));
  EXPECT_TRUE(sel("app=web,tier!=db,env in (a,b),!legacy,tier", web));
  EXPECT_FALSE(sel("app=web,legacy", web));
  EXPECT_FALSE(sel("!app", web));
  EXPECT_TRUE(sel("missing!=x", web));  // != matches absent labels
  EXPECT_TRUE(sel("env notin (b,c)", web));
  EXPECT_FALSE(sel("env notin (a)", web));
  EXPECT_TRUE(sel("missing notin (a)", web));
  EXPECT_FALSE(sel("missing in (a)", web));
  EXPECT_TRUE(sel("  app = web ,  env in ( a , b )  ", web));
  EXPECT_TRUE(sel("app.kubernetes.io/name!=x", web));
  EXPECT_FALSE(sel("tier=", web));
  EXPECT_TRUE(sel("tier=", Labels{{"tier", ""}}));
  EXPECT_TRUE(sel("gen>3", Labels{{"gen", "4"}}));
  EXPECT_FALSE(sel("gen<3", Labels{{"gen", "4"}}));
  EXPECT_FALSE(sel("gen>3", Labels{{"gen", "x"}}));
  EXPECT_TRUE(sel("x in (in,notin)", Labels{{"x", "notin"}}));
  EXPECT_TRUE(sel("kubernetes.io/service-name=web", Labels{{"kubernetes.io/service-name", "web"}}));
}

TEST(LabelSelector, PrintsSortedCanonicalForm) {
  auto s = LabelSelector::parse("tier!=db, app=web, env in (b,a), !legacy, has");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->toString(), "app=web,env in (a,b),has,!legacy,tier!=db");
}

TEST(LabelSelector, ErrorsNameTheBadTerm) {
  auto expectError = [](const char* text, const char* fragment) {
    auto s = LabelSelector::parse(text);
    ASSERT_FALSE(s.has_value()) << text;
    EXPECT_NE(s.error().message.find(fragment), std::string::npos) << text << ": " << s.error().message;
  };
  expectError("app=web,", "expected a requirement");
  expectError("app in a", "expected '('");
  expectError("app in (a", "unterminated");
  expectError("app=web=x", "expected ','");
  expectError("-bad=x", "key \"-bad\"");
  expectError("app=a b", "expected ','");
  expectError("app=-x-", "value \"-x-\"");
  expectError("gen>x", "must be an integer");
  expectError("=x", "where a label key was expected");
  expectError("a/b/c=x", "key \"a/b/c\"");
}

TEST(LabelSelector, JsonForm) {
  auto s = LabelSelector::fromJson(Json::parse(R"({
    "matchLabels": {"app": "web"},
    "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "staging"]},
                         {"key": "legacy", "operator": "DoesNotExist"},
                         {"key": "tier", "operator": "Exists"},
                         {"key": "zone", "operator": "NotIn", "values": ["b"]}]})"));
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_TRUE(s->matches({{"app", "web"}, {"env", "prod"}, {"tier", "x"}}));
  EXPECT_FALSE(s->matches({{"app", "web"}, {"env", "prod"}}));
  EXPECT_FALSE(s->matches({{"app", "web"}, {"env", "prod"}, {"tier", "x"}, {"legacy", "1"}}));
  EXPECT_FALSE(s->matches({{"app", "web"}, {"env", "prod"}, {"tier", "x"}, {"zone", "b"}}));
  EXPECT_TRUE(s->matchesObject(Json::parse(R"({"metadata":{"labels":{"app":"web","env":"staging","tier":""}}})")));

  EXPECT_TRUE(LabelSelector::fromJson(Json::object())->matchesEverything());
  EXPECT_TRUE(LabelSelector::fromJson(Json())->matchesNothing());
  EXPECT_FALSE(LabelSelector::fromJson(Json())->matches({}));

  auto badOp = LabelSelector::fromJson(Json::parse(R"({"matchExpressions":[{"key":"a","operator":"Gt","values":["1"]}]})"));
  ASSERT_FALSE(badOp);
  EXPECT_NE(badOp.error().message.find("selector.matchExpressions[0].operator"), std::string::npos);
  auto noValues = LabelSelector::fromJson(Json::parse(R"({"matchExpressions":[{"key":"a","operator":"In"}]})"));
  ASSERT_FALSE(noValues);
  EXPECT_NE(noValues.error().message.find("matchExpressions[0].values"), std::string::npos);
  auto extraValues = LabelSelector::fromJson(Json::parse(R"({"matchExpressions":[{"key":"a","operator":"Exists","values":["x"]}]})"));
  EXPECT_FALSE(extraValues);
}

TEST(LabelSelector, MapSelectorAndJsonLabels) {
  auto s = LabelSelector::fromMap({{"app", "web"}});
  EXPECT_TRUE(s.matchesJson(Json::parse(R"({"app":"web","x":"y"})")));
  EXPECT_FALSE(s.matchesJson(Json()));
  EXPECT_TRUE(LabelSelector::fromMap({}).matchesJson(Json()));
}

TEST(FieldSelector, WhatKubectlSends) {
  Json pod = Json::parse(R"({"metadata":{"name":"web-1","namespace":"default"},
                            "spec":{"nodeName":"node-a"},"status":{"phase":"Running"}})");
  auto running = FieldSelector::parse("spec.nodeName=node-a,status.phase!=Succeeded,status.phase!=Failed");
  ASSERT_TRUE(running);
  EXPECT_TRUE(running->matches(pod));
  pod["status"]["phase"] = "Failed";
  EXPECT_FALSE(running->matches(pod));

  Json event = Json::parse(R"({"involvedObject":{"name":"web-1","namespace":"default","uid":"u-1","kind":"Pod"}})");
  auto ev = FieldSelector::parse("involvedObject.name=web-1,involvedObject.namespace=default,involvedObject.uid=u-1");
  ASSERT_TRUE(ev);
  EXPECT_TRUE(ev->matches(event));
  EXPECT_EQ(ev->exactValue("involvedObject.uid"), "u-1");
  EXPECT_FALSE(ev->exactValue("metadata.name").has_value());

  auto byName = FieldSelector::parse("metadata.name==web-1");
  EXPECT_TRUE(byName->matches(pod));
  // Absent fields compare as "": unscheduled pods have spec.nodeName="".
  auto unscheduled = FieldSelector::parse("spec.nodeName=");
  EXPECT_FALSE(unscheduled->matches(pod));
  EXPECT_TRUE(unscheduled->matches(Json::parse(R"({"spec":{}})")));
  EXPECT_TRUE(FieldSelector::parse("")->empty());
  EXPECT_TRUE(FieldSelector::parse("")->matches(pod));
  EXPECT_TRUE(FieldSelector::parse("spec.unschedulable=true")->matches(Json::parse(R"({"spec":{"unschedulable":true}})")));
}

TEST(FieldSelector, EscapesAndErrors) {
  auto s = FieldSelector::parse(R"(metadata.name=a\,b\=c\\d)");
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->terms()[0].value, R"(a,b=c\d)");
  EXPECT_EQ(s->toString(), R"(metadata.name=a\,b\=c\\d)");
  auto noOp = FieldSelector::parse("metadata.name");
  ASSERT_FALSE(noOp);
  EXPECT_NE(noOp.error().message.find("term \"metadata.name\""), std::string::npos);
  EXPECT_FALSE(FieldSelector::parse("a=b=c"));
  EXPECT_FALSE(FieldSelector::parse(R"(a=\x)"));
  EXPECT_FALSE(FieldSelector::parse("=x"));
  auto lookup = FieldSelector::parse("x=1")->matches([](std::string_view f) { return f == "x" ? "1" : ""; });
  EXPECT_TRUE(lookup);
}
