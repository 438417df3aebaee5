#include "tools/common/cli.h"

#include <algorithm>
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

void DrawProgress(std::string_view tool, uint64_t done, uint64_t total, std::string_view figures) {
  constexpr int kWidth = 30;
  const double f = total == 0 ? 1.0 : std::min(1.0, static_cast<double>(done) / total);
  const int filled = static_cast<int>(f * kWidth);
  std::string line = "\r" + std::string(tool) + ": [";
  for (int i = 0; i < kWidth; ++i) line += i < filled ? '#' : '.';
  char percent[16];
  std::snprintf(percent, sizeof(percent), "] %3d%%  ", static_cast<int>(f * 100));
  line += percent;
  line += figures;
  if (done >= total) line += "\r\033[K";
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace spool::cli
