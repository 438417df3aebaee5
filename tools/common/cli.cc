#include "tools/common/cli.h"

#include <cstdio>

namespace spool::cli {

void PrintError(std::string_view tool, std::string_view message) {
  std::string line(tool);
  line += ": ";
  line += message;
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stderr);
}

std::string Printable(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7F) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    } else {
      out += ch;
    }
  }
  return out;
}

std::string ParseSpoolDirs(std::string_view list, std::vector<std::string>* dirs) {
  dirs->clear();
  size_t start = 0;
  for (;;) {
    const size_t comma = list.find(',', start);
    dirs->emplace_back(list.substr(start, comma - start));
    if (dirs->back().empty()) {
      return "empty directory in --spool '" + Printable(list) + "'";
    }
    if (comma == std::string_view::npos) return "";
    start = comma + 1;
  }
}

}  // namespace spool::cli
