#include "runtime/config_yaml.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>

namespace cryo::cli::criu {
namespace {

const char* verb_key(Verb verb) {
  switch (verb) {
    case kDump: return "dump";
    case kPreDump: return "pre-dump";
    case kRestore: return "restore";
    case kCheck: return "check";
  }
  return "";
}

bool is_verb_key(const std::string& key) {
  return key == "dump" || key == "pre-dump" || key == "restore" || key == "check";
}

const Option* find_option(const std::string& name) {
  for (const auto& o : table())
    if (o.name == name) return &o;
  return nullptr;
}

class Reader {
 public:
  Reader(std::string path, std::vector<std::string>* words) : path_(std::move(path)), words_(words) {}

  // One mapping of options; with `take` false they are checked only (a
  // section for another verb).
  bool options(const YAML::Node& map, bool take, bool top) {
    if (!map.IsMap()) return fail(map, "want a mapping of option names to values");
    for (const auto& entry : map) {
      std::string key = entry.first.as<std::string>();
      const YAML::Node& value = entry.second;
      if (top && is_verb_key(key)) {
        if (!options(value, take && key == current_, false)) return false;
        continue;
      }
      const Option* o = find_option(key);
      if (!o) return fail(entry.first, "unknown option '" + key + "'");
      if (!option(*o, value, take)) return false;
    }
    return true;
  }

  std::string current_;
  std::string error;

 private:
  bool fail(const YAML::Node& at, const std::string& why) {
    error = path_ + ":" + std::to_string(at.Mark().line + 1) + ": " + why;
    return false;
  }

  bool option(const Option& o, const YAML::Node& value, bool take) {
    const std::string key = o.name;
    if (value.IsSequence()) {
      if (!o.repeatable) return fail(value, key + " takes one value, not a list");
      for (const auto& v : value)
        if (!one(o, v, take)) return false;
      return true;
    }
    return one(o, value, take);
  }

  bool one(const Option& o, const YAML::Node& v, bool take) {
    if (!v.IsScalar()) return fail(v, o.name + ": want a value, not a mapping");
    std::string text = v.as<std::string>();
    bool flag = false;
    bool is_bool = YAML::convert<bool>::decode(v, flag);
    if (o.value == Value::kNone) {
      if (!is_bool) return fail(v, o.name + " is a flag: want true or false, not '" + text + "'");
      if (take && flag) words_->push_back("--" + o.name);
      if (take && !flag && o.negatable) words_->push_back("--no-" + o.name);
      return true;
    }
    if (o.value == Value::kOptional && is_bool) {
      if (take && flag) words_->push_back("--" + o.name);
      return true;
    }
    if (text.empty()) return fail(v, o.name + " wants a value");
    if (auto bad = bad_value(o, text); !bad.empty()) return fail(v, bad);
    if (take) words_->push_back("--" + o.name + "=" + text);
    return true;
  }

  std::string path_;
  std::vector<std::string>* words_;
};

}  // namespace

std::string default_yaml_config() {
  const char* env = std::getenv("CRYO_CONFIG");
  return env && *env ? env : "/etc/cryo/cryo.yaml";
}

bool is_yaml_config(const std::string& path) {
  return path.ends_with(".yaml") || path.ends_with(".yml");
}

bool read_yaml_config(const std::string& path, Verb verb, std::vector<std::string>* words, std::string* error) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    *error = "cannot read the configuration file " + path;
    return false;
  } catch (const YAML::Exception& e) {
    *error = path + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg;
    return false;
  }
  if (root.IsNull()) return true;  // an empty file
  std::vector<std::string> taken;
  Reader reader(path, &taken);
  reader.current_ = verb_key(verb);
  try {
    if (!reader.options(root, true, true)) {
      *error = reader.error;
      return false;
    }
  } catch (const YAML::Exception& e) {
    *error = path + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg;
    return false;
  }
  words->insert(words->end(), taken.begin(), taken.end());
  return true;
}

}  // namespace cryo::cli::criu
