#include "runtime/args.h"

namespace cryo::cli {

std::optional<std::string> Args::get(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

std::string Args::get_or(const std::string& key, const std::string& fallback) const {
  auto v = get(key);
  return v ? *v : fallback;
}

const std::vector<std::string>& Args::all(const std::string& key) const {
  static const std::vector<std::string> kEmpty;
  auto it = values_.find(key);
  return it == values_.end() ? kEmpty : it->second;
}

namespace {

std::string key_of(const OptionSpec& spec) {
  for (auto& n : spec.names)
    if (n.starts_with("--")) return n.substr(2);
  return spec.names.front().substr(1);
}

const OptionSpec* find(const std::vector<OptionSpec>& specs, const std::string& name) {
  for (auto& s : specs)
    for (auto& n : s.names) {
      if (n == name) return &s;
      // runc accepts "-name" for "--name".
      if (n.starts_with("--") && name.size() > 2 && name[0] == '-' && name[1] != '-' && n.substr(1) == name)
        return &s;
    }
  return nullptr;
}

}  // namespace

std::optional<Args> parse(const std::vector<OptionSpec>& specs, const std::vector<std::string>& argv,
                          std::string* error, bool stop_at_positional) {
  Args args;
  for (size_t i = 0; i < argv.size(); i++) {
    const std::string& a = argv[i];
    if (a == "--") {
      args.positional_.insert(args.positional_.end(), argv.begin() + static_cast<long>(i) + 1, argv.end());
      break;
    }
    if (a.size() < 2 || a[0] != '-') {
      if (stop_at_positional) {
        args.positional_.insert(args.positional_.end(), argv.begin() + static_cast<long>(i), argv.end());
        break;
      }
      args.positional_.push_back(a);
      continue;
    }
    std::string name = a;
    std::optional<std::string> inline_value;
    if (size_t eq = a.find('='); eq != std::string::npos) {
      name = a.substr(0, eq);
      inline_value = a.substr(eq + 1);
    }
    const OptionSpec* spec = find(specs, name);
    if (!spec && !inline_value && a[1] != '-' && a.size() > 2) {
      // "-v4", "-t123": a one-letter option with its value attached.
      spec = find(specs, a.substr(0, 2));
      if (spec && spec->takes_value) inline_value = a.substr(2);
      else spec = nullptr;
    }
    if (!spec) {
      *error = "unknown option " + name;
      return std::nullopt;
    }
    std::string key = key_of(*spec);
    std::string value;
    if (spec->takes_value) {
      if (inline_value) value = *inline_value;
      else if (i + 1 < argv.size()) value = argv[++i];
      else {
        *error = "option " + name + " needs a value";
        return std::nullopt;
      }
    } else if (inline_value) {
      if (*inline_value == "false") continue;  // "--detach=false"
      value = *inline_value;
    }
    auto& slot = args.values_[key];
    if (!spec->repeatable) slot.clear();
    slot.push_back(value);
  }
  return args;
}

}  // namespace cryo::cli
