#include "tools/common/flags.h"

#include <utility>

#include "tools/common/cli.h"

namespace spool::cli {

Flags::Flags(std::string_view tool, int usage_exit_code, std::string_view command)
    : tool_(tool), usage_exit_code_(usage_exit_code), command_(command) {}

Flags& Flags::Value(std::string_view name, Setter set, Repeat repeat) {
  options_.push_back({std::string(name), /*takes_value=*/true, repeat, std::move(set)});
  return *this;
}

Flags& Flags::Value(std::string_view name, std::string* value, Repeat repeat) {
  return Value(
      name,
      [value](const std::string& v) {
        *value = v;
        return std::string();
      },
      repeat);
}

Flags& Flags::Value(std::string_view name, std::optional<std::string>* value, Repeat repeat) {
  return Value(
      name,
      [value](const std::string& v) {
        *value = v;
        return std::string();
      },
      repeat);
}

Flags& Flags::Flag(std::string_view name, std::function<void()> given, Repeat repeat) {
  options_.push_back({std::string(name), /*takes_value=*/false, repeat,
                      [given = std::move(given)](const std::string&) {
                        given();
                        return std::string();
                      }});
  return *this;
}

Flags& Flags::Flag(std::string_view name, bool* on, Repeat repeat) {
  return Flag(
      name, [on] { *on = true; }, repeat);
}

Flags& Flags::Positional(Setter add) {
  positional_ = std::move(add);
  return *this;
}

Flags& Flags::StopAtPositional() {
  stop_at_positional_ = true;
  return *this;
}

Flags& Flags::UnknownOptionHint(std::string_view hint) {
  unknown_hint_ = hint;
  return *this;
}

Flags::Option* Flags::Find(std::string_view name) {
  for (Option& o : options_) {
    if (o.name == name) return &o;
  }
  return nullptr;
}

std::string Flags::TakeOption(std::span<const std::string> args, size_t* i) {
  const std::string& arg = args[*i];
  std::string name = arg;
  std::optional<std::string> value;
  if (const size_t eq = arg.find('='); eq != std::string::npos && arg.starts_with("--")) {
    name = arg.substr(0, eq);
    value = arg.substr(eq + 1);
  }
  if (name == "--help") return "option --help takes no value";  // bare, Parse took it
  Option* option = Find(name);
  if (option == nullptr) {
    std::string error = "unknown option '" + Printable(name) + "'";
    if (!unknown_hint_.empty()) error += " (" + unknown_hint_ + ")";
    return error;
  }
  if (option->takes_value && !value) {
    if (*i + 1 >= args.size()) return "option " + name + " needs a value";
    value = args[++*i];
  }
  if (!option->takes_value && value) return "option " + name + " takes no value";
  if (++option->given > 1 && option->repeat == Repeat::kOnce) {
    return "option " + name + " given twice";
  }
  return option->set(value.value_or(""));
}

Parsed Flags::Parse(std::span<const std::string> args) {
  bool options_done = false;
  size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string& arg = args[i];
    const bool option = !options_done && arg != "-" && arg.starts_with("-");
    if (option && (arg == "-h" || arg == "--help")) {
      consumed_ = i + 1;
      return Parsed::kHelp;
    }
    if (option && arg == "--") {
      options_done = true;
      if (stop_at_positional_) {
        ++i;
        break;
      }
      continue;
    }
    if (!option && stop_at_positional_) break;
    std::string error;
    if (option) {
      error = TakeOption(args, &i);
    } else if (positional_) {
      error = positional_(arg);
    } else {
      error = "unexpected argument '" + Printable(arg) + "'";
    }
    if (!error.empty()) {
      consumed_ = i + 1;
      UsageError(error);
      return Parsed::kUsageError;
    }
  }
  consumed_ = i;
  return Parsed::kOk;
}

Parsed Flags::Parse(int argc, char** argv) {
  const std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  return Parse(args);
}

int Flags::UsageError(std::string_view message) const {
  std::string line;
  std::string see = tool_;
  if (!command_.empty()) {
    line += command_ + ": ";
    see += " " + command_;
  }
  line += message;
  line += " (see '" + see + " --help')";
  PrintError(tool_, line);
  return usage_exit_code_;
}

}  // namespace spool::cli
