// docs/format.md against engine/log/format.h, LevelDB's log_format.h and
// doc/log_format.md kept in step by a test: every row of the doc's field tables must
// name a field of the struct at its offset and with its size, every field must have a
// row, every constant the header declares must have a row with its value, and the record
// types must be documented with their values. The paths of both files come from CMake
// (SPOOL_FORMAT_DOC, SPOOL_FORMAT_HEADER).

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "log/format.h"
#include "log/record.h"

namespace spool::log {
namespace {

constexpr char kDocPath[] = SPOOL_FORMAT_DOC;
constexpr char kHeaderPath[] = SPOOL_FORMAT_HEADER;

// ---- The doc's tables -----------------------------------------------------------------------

struct Row {
  int line = 0;  // 1-based line number in the doc
  std::vector<std::string> cells;
};

std::string ReadFile(const char* path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string Trim(std::string_view s) {
  const size_t begin = s.find_first_not_of(" \t");
  if (begin == std::string_view::npos) return "";
  const size_t end = s.find_last_not_of(" \t");
  return std::string(s.substr(begin, end - begin + 1));
}

// The cells of a table line "| a | b |"; empty if the line is not a table row.
std::vector<std::string> Cells(const std::string& line) {
  const std::string t = Trim(line);
  if (t.size() < 2 || t.front() != '|' || t.back() != '|') return {};
  std::vector<std::string> cells;
  size_t start = 1;
  for (size_t bar = t.find('|', start); bar != std::string::npos; bar = t.find('|', start)) {
    cells.push_back(Trim(std::string_view(t).substr(start, bar - start)));
    start = bar + 1;
  }
  return cells;
}

// "`name`" -> "name".
std::string Unquote(const std::string& cell) {
  if (cell.size() >= 2 && cell.front() == '`' && cell.back() == '`') {
    return cell.substr(1, cell.size() - 2);
  }
  return cell;
}

// The body rows of the first table after the line `heading` (exactly) whose header row
// starts with `columns`. Fails the test if there is none.
std::vector<Row> TableAfter(const std::vector<std::string>& lines, const std::string& heading,
                            const std::vector<std::string>& columns) {
  size_t i = 0;
  while (i < lines.size() && lines[i] != heading) ++i;
  if (i == lines.size()) {
    ADD_FAILURE() << kDocPath << " has no heading \"" << heading << "\"";
    return {};
  }
  for (++i; i < lines.size(); ++i) {
    if (lines[i].starts_with("#")) break;  // the next section: no table under the heading
    std::vector<std::string> header = Cells(lines[i]);
    if (header.size() < columns.size() ||
        !std::equal(columns.begin(), columns.end(), header.begin())) {
      continue;
    }
    std::vector<Row> rows;
    for (i += 2; i < lines.size(); ++i) {  // skip the |---| line
      std::vector<std::string> cells = Cells(lines[i]);
      if (cells.empty()) break;
      rows.push_back({static_cast<int>(i + 1), std::move(cells)});
    }
    return rows;
  }
  ADD_FAILURE() << kDocPath << ": no table with columns \"" << columns[0] << " | ...\" under \""
                << heading << "\"";
  return {};
}

// A cell holding an unsigned integer (decimal or 0x hexadecimal), nothing else.
bool ParseNumber(const std::string& cell, uint64_t* value) {
  if (cell.empty()) return false;
  char* end = nullptr;
  *value = std::strtoull(cell.c_str(), &end, 0);
  return end != nullptr && *end == '\0';
}

std::string Where(const Row& row) { return std::string(kDocPath) + ":" + std::to_string(row.line); }

// ---- Field tables -----------------------------------------------------------------------

struct Field {
  const char* name;
  size_t offset;
  size_t size;
};

#define SPOOL_FIELD(type, field) \
  Field { #field, offsetof(type, field), sizeof(type::field) }

const std::vector<Field>& SegmentHeaderFields() {
  static const std::vector<Field> fields = {
      SPOOL_FIELD(SegmentHeader, magic),       SPOOL_FIELD(SegmentHeader, format_version),
      SPOOL_FIELD(SegmentHeader, header_size), SPOOL_FIELD(SegmentHeader, spool_id),
      SPOOL_FIELD(SegmentHeader, shard),       SPOOL_FIELD(SegmentHeader, reserved0),
      SPOOL_FIELD(SegmentHeader, seq),         SPOOL_FIELD(SegmentHeader, prev_seq),
      SPOOL_FIELD(SegmentHeader, prev_end),    SPOOL_FIELD(SegmentHeader, segment_size),
      SPOOL_FIELD(SegmentHeader, created_ms),  SPOOL_FIELD(SegmentHeader, checksum),
  };
  return fields;
}

const std::vector<Field>& RecordHeaderFields() {
  static const std::vector<Field> fields = {
      SPOOL_FIELD(RecordHeader, magic),        SPOOL_FIELD(RecordHeader, type),
      SPOOL_FIELD(RecordHeader, flags),        SPOOL_FIELD(RecordHeader, header_size),
      SPOOL_FIELD(RecordHeader, payload_size), SPOOL_FIELD(RecordHeader, acked_lag),
      SPOOL_FIELD(RecordHeader, epoch),        SPOOL_FIELD(RecordHeader, batch_seq),
      SPOOL_FIELD(RecordHeader, id_hi),        SPOOL_FIELD(RecordHeader, id_lo),
      SPOOL_FIELD(RecordHeader, payload_hash), SPOOL_FIELD(RecordHeader, header_hash),
  };
  return fields;
}

#undef SPOOL_FIELD

// The test's own lists must cover their struct byte for byte, so that a field added to
// format.h without a row in them (and so in the doc) fails here.
void ExpectContiguous(const std::vector<Field>& fields, size_t struct_size, const char* what) {
  size_t next = 0;
  for (const Field& f : fields) {
    EXPECT_EQ(f.offset, next) << what << "." << f.name << ": a gap or an unlisted field before it";
    next = f.offset + f.size;
  }
  EXPECT_EQ(next, struct_size) << what << ": fields after the last listed one";
}

// Checks the doc's field table under `heading` against `fields`: the rows in offset order,
// one per field, each with the field's offset and size. A meaning that says "bytes 0..N"
// (a checksum's coverage) must end right before the field; the header_size row's meaning
// must start with the struct's size.
void CheckFieldTable(const std::string& heading, const std::vector<Field>& fields,
                     size_t struct_size, size_t checksummed) {
  const std::vector<Row> rows =
      TableAfter(Lines(ReadFile(kDocPath)), heading, {"offset", "size", "field", "meaning"});
  std::map<std::string, Field> by_name;
  for (const Field& f : fields) by_name.emplace(f.name, f);
  std::set<std::string> documented;
  uint64_t next = 0;
  for (const Row& row : rows) {
    ASSERT_GE(row.cells.size(), 4u) << Where(row);
    uint64_t offset = 0, size = 0;
    ASSERT_TRUE(ParseNumber(row.cells[0], &offset))
        << Where(row) << ": offset \"" << row.cells[0] << "\" is not a number";
    ASSERT_TRUE(ParseNumber(row.cells[1], &size))
        << Where(row) << ": size \"" << row.cells[1] << "\" is not a number";
    const std::string name = Unquote(row.cells[2]);
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      ADD_FAILURE() << Where(row) << ": \"" << name << "\" is not a field of " << heading
                    << " in format.h";
      continue;
    }
    EXPECT_TRUE(documented.insert(name).second) << Where(row) << ": " << name << " twice";
    EXPECT_EQ(offset, it->second.offset)
        << Where(row) << ": " << name << " is at offset " << it->second.offset << " in format.h";
    EXPECT_EQ(size, it->second.size)
        << Where(row) << ": " << name << " has " << it->second.size << " bytes in format.h";
    EXPECT_EQ(offset, next) << Where(row) << ": rows out of order, or a gap before " << name;
    next = offset + size;

    const std::string& meaning = row.cells[3];
    if (const size_t at = meaning.find("bytes 0.."); at != std::string::npos) {
      uint64_t last = 0;
      const std::string tail = meaning.substr(at + std::strlen("bytes 0.."));
      ASSERT_TRUE(ParseNumber(tail.substr(0, tail.find_first_not_of("0123456789")), &last))
          << Where(row);
      EXPECT_EQ(last + 1, it->second.offset)
          << Where(row) << ": the checksum covers the bytes before it";
      EXPECT_EQ(last + 1, checksummed) << Where(row) << ": format.h's k*Checksummed differs";
    }
    if (name == "header_size") {
      uint64_t stated = 0;
      EXPECT_TRUE(
          ParseNumber(meaning.substr(0, meaning.find_first_not_of("0123456789")), &stated) &&
          stated == struct_size)
          << Where(row) << ": header_size is " << struct_size << " (sizeof) in format.h";
    }
  }
  EXPECT_EQ(next, struct_size) << heading << ": the rows end before sizeof (" << struct_size << ")";
  for (const Field& f : fields) {
    EXPECT_EQ(documented.count(f.name), 1u)
        << heading << ": field " << f.name << " (offset " << f.offset << ", size " << f.size
        << ") has no row in " << kDocPath;
  }
}

TEST(FormatDocTest, TheTestKnowsEveryField) {
  ExpectContiguous(SegmentHeaderFields(), sizeof(SegmentHeader), "SegmentHeader");
  ExpectContiguous(RecordHeaderFields(), sizeof(RecordHeader), "RecordHeader");
}

TEST(FormatDocTest, SegmentHeaderTableMatchesTheStruct) {
  CheckFieldTable("## Segment header", SegmentHeaderFields(), sizeof(SegmentHeader),
                  kSegmentHeaderChecksummed);
}

TEST(FormatDocTest, RecordHeaderTableMatchesTheStruct) {
  CheckFieldTable("### Record header", RecordHeaderFields(), sizeof(RecordHeader),
                  kRecordHeaderChecksummed);
}

// ---- Constants ----------------------------------------------------------------------------

struct Constant {
  bool is_text;
  uint64_t number;
  std::string text;
};

// Every constant of format.h, by name. A constant added there without an entry here
// fails EveryConstantInTheHeaderIsDocumented.
const std::map<std::string, Constant>& Constants() {
  static const std::map<std::string, Constant> constants = {
      {"kFormatVersion", {false, kFormatVersion, ""}},
      {"kBlockSize", {false, kBlockSize, ""}},
      {"kRecordAlignment", {false, kRecordAlignment, ""}},
      {"kSegmentMagic", {false, kSegmentMagic, ""}},
      {"kSegmentHeaderChecksummed", {false, kSegmentHeaderChecksummed, ""}},
      {"kSegmentDataStart", {false, kSegmentDataStart, ""}},
      {"kMinSegmentFileSize", {false, kMinSegmentFileSize, ""}},
      {"kRecordMagic", {false, kRecordMagic, ""}},
      {"kMaxRecordType", {false, kMaxRecordType, ""}},
      {"kFlagBatchEnd", {false, kFlagBatchEnd, ""}},
      {"kFlagRelocated", {false, kFlagRelocated, ""}},
      {"kRecordHeaderChecksummed", {false, kRecordHeaderChecksummed, ""}},
      {"kSegmentPrefix", {true, 0, kSegmentPrefix}},
      {"kSegmentSlotDigits", {false, static_cast<uint64_t>(kSegmentSlotDigits), ""}},
      {"kSegmentTempSuffix", {true, 0, kSegmentTempSuffix}},
  };
  return constants;
}

// The names of the constants format.h declares ("inline constexpr T kName = ...").
std::vector<std::string> DeclaredConstants() {
  const std::string text = ReadFile(kHeaderPath);
  EXPECT_FALSE(text.empty()) << "cannot read " << kHeaderPath;
  static const std::regex kDeclaration(R"(inline\s+constexpr\s+[\w:]+\s+(k\w+)\s*(\[\s*\])?\s*=)");
  std::vector<std::string> names;
  for (std::sregex_iterator it(text.begin(), text.end(), kDeclaration), end; it != end; ++it) {
    names.push_back((*it)[1]);
  }
  return names;
}

std::vector<Row> ConstantRows() {
  return TableAfter(Lines(ReadFile(kDocPath)), "## Constants", {"constant", "value", "meaning"});
}

TEST(FormatDocTest, DocumentedConstantsHaveTheirValues) {
  const std::vector<Row> rows = ConstantRows();
  EXPECT_FALSE(rows.empty());
  for (const Row& row : rows) {
    ASSERT_GE(row.cells.size(), 3u) << Where(row);
    const std::string name = Unquote(row.cells[0]);
    auto it = Constants().find(name);
    if (it == Constants().end()) {
      ADD_FAILURE() << Where(row) << ": " << name << " is not a constant of format.h";
      continue;
    }
    const Constant& c = it->second;
    const std::string& cell = row.cells[1];
    if (c.is_text) {
      EXPECT_EQ(cell, "`" + c.text + "`")
          << Where(row) << ": " << name << " is \"" << c.text << "\" in format.h";
      continue;
    }
    uint64_t value = 0;
    ASSERT_TRUE(ParseNumber(cell, &value)) << Where(row) << ": \"" << cell << "\" is not a number";
    EXPECT_EQ(value, c.number) << Where(row) << ": " << name << " is " << c.number
                               << " in format.h";
    // A magic stated as "the bytes `XYZ`": its little-endian bytes on disk.
    const std::string& meaning = row.cells[2];
    if (const size_t at = meaning.find("the bytes `"); at != std::string::npos) {
      const size_t begin = at + std::strlen("the bytes `");
      const std::string bytes = meaning.substr(begin, meaning.find('`', begin) - begin);
      std::string on_disk;
      for (uint64_t v = c.number; v != 0; v >>= 8) on_disk.push_back(static_cast<char>(v & 0xff));
      EXPECT_EQ(bytes, on_disk) << Where(row) << ": " << name << "'s bytes on disk";
    }
  }
}

TEST(FormatDocTest, EveryConstantInTheHeaderIsDocumented) {
  std::set<std::string> documented;
  for (const Row& row : ConstantRows()) {
    if (!row.cells.empty()) documented.insert(Unquote(row.cells[0]));
  }
  const std::vector<std::string> declared = DeclaredConstants();
  EXPECT_GE(declared.size(), Constants().size()) << "the scan of " << kHeaderPath << " missed some";
  for (const std::string& name : declared) {
    EXPECT_EQ(Constants().count(name), 1u)
        << name << " (format.h) is not in this test's Constants(): add it, and a row to "
        << kDocPath;
    EXPECT_EQ(documented.count(name), 1u)
        << name << " (format.h) has no row in " << kDocPath << ", \"## Constants\"";
  }
}

// ---- Record types ---------------------------------------------------------------------------

TEST(FormatDocTest, RecordTypesAreDocumentedWithTheirValues) {
  const std::vector<Row> rows =
      TableAfter(Lines(ReadFile(kDocPath)), "### Record types", {"type", "value", "payload"});
  std::set<uint64_t> documented;
  for (const Row& row : rows) {
    ASSERT_GE(row.cells.size(), 3u) << Where(row);
    uint64_t value = 0;
    ASSERT_TRUE(ParseNumber(row.cells[1], &value)) << Where(row);
    ASSERT_GE(value, 1u) << Where(row);
    ASSERT_LE(value, kMaxRecordType) << Where(row);
    EXPECT_EQ(Unquote(row.cells[0]), RecordTypeName(static_cast<RecordType>(value)))
        << Where(row) << ": type " << value << "'s name";
    EXPECT_TRUE(documented.insert(value).second) << Where(row) << ": type " << value << " twice";
  }
  for (uint64_t t = 1; t <= kMaxRecordType; ++t) {
    EXPECT_EQ(documented.count(t), 1u)
        << "record type " << t << " (" << RecordTypeName(static_cast<RecordType>(t))
        << ") has no row in " << kDocPath;
  }
}

}  // namespace
}  // namespace spool::log
