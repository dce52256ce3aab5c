// The CSV reader: RFC 4180 quoting, CRLF, header and field-count checks with
// file:line in every message.

#include "common/csv.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/error.hpp"

namespace lifeline {
namespace {

std::string ErrorOf(const std::string& text, const CsvOptions& o = {}) {
  try {
    ParseCsv(text, "t.csv", o);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

TEST(Csv, QuotedFieldsHoldCommasQuotesAndLineBreaks) {
  const CsvFile f = ParseCsv("name,note,n\n\"a,b\",\"say \"\"hi\"\"\",1\n\"two\nlines\",,2\n", "t.csv");
  ASSERT_EQ(f.header.fields, (std::vector<std::string>{"name", "note", "n"}));
  ASSERT_EQ(f.rows.size(), 2u);
  EXPECT_EQ(f.rows[0].fields, (std::vector<std::string>{"a,b", "say \"hi\"", "1"}));
  EXPECT_EQ(f.rows[0].line, 2);
  EXPECT_EQ(f.rows[1].fields, (std::vector<std::string>{"two\nlines", "", "2"}));
  EXPECT_EQ(f.rows[1].line, 3);
  EXPECT_EQ(f.Column("note"), 1);
  EXPECT_EQ(f.Column("absent"), -1);
}

TEST(Csv, CrlfBlankLinesCommentsAndSpaces) {
  const CsvFile f = ParseCsv("# a comment\r\na , b\r\n\r\n 1 ,\" 2 \"\r\n   \r\n3,4", "t.csv");
  EXPECT_EQ(f.header.fields, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(f.header.line, 2);
  ASSERT_EQ(f.rows.size(), 2u);
  EXPECT_EQ(f.rows[0].fields, (std::vector<std::string>{"1", " 2 "}));  // quoted spaces are kept
  EXPECT_EQ(f.rows[0].line, 4);
  EXPECT_EQ(f.rows[1].fields, (std::vector<std::string>{"3", "4"}));  // no newline at the end
  EXPECT_EQ(f.rows[1].line, 6);
  // Without trimming or comments.
  const CsvFile g = ParseCsv("#a, b\n1 ,2\n", "t.csv", CsvOptions{false, false});
  EXPECT_EQ(g.header.fields, (std::vector<std::string>{"#a", " b"}));
  EXPECT_EQ(g.rows[0].fields, (std::vector<std::string>{"1 ", "2"}));
}

TEST(Csv, BadInputNamesFileAndLine) {
  EXPECT_EQ(ErrorOf("a,b\n1,2\n1,2,3\n"),
            "t.csv:3: has 3 fields; expected 2 fields as in the header (a,b). hint: a field holding a comma is "
            "quoted: \"a,b\"");
  EXPECT_EQ(ErrorOf("a,b\n1,\"open\n"),
            "t.csv:2: a quoted field is not closed; expected a closing '\"' (a quote inside a quoted field is "
            "written \"\")");
  EXPECT_NE(ErrorOf("a,b\n1,\"x\"y\n").find("t.csv:2: text after a closing quote"), std::string::npos);
  EXPECT_NE(ErrorOf("a,b\n1,x\"y\n").find("t.csv:2: a quote inside an unquoted field"), std::string::npos);
  EXPECT_NE(ErrorOf("a,b\r1,2\n").find("t.csv:1: a carriage return inside a line"), std::string::npos);
  EXPECT_EQ(ErrorOf(""), "t.csv: is empty; expected a header line naming the columns");
  EXPECT_EQ(ErrorOf("\n# only a comment\n"), "t.csv: is empty; expected a header line naming the columns");
}

TEST(Csv, RequireHeader) {
  const CsvFile f = ParseCsv("\nmodel,tps\nm,1\n", "t.csv");
  f.RequireHeader({"model", "tps"});
  try {
    f.RequireHeader({"model", "plan", "tps"});
    ADD_FAILURE() << "a wrong header was accepted";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "t.csv:2: key 'header': the columns are model,tps; expected model,plan,tps. hint: the first line "
                 "names the columns, in this order");
  }
}

TEST(Csv, ReadCsvFromAFileAndMissingFile) {
  const auto p = std::filesystem::temp_directory_path() / ("lifeline_csv_" + std::to_string(getpid()) + ".csv");
  std::ofstream(p, std::ios::binary) << "x,y\r\n1,2\r\n";
  const CsvFile f = ReadCsv(p);
  EXPECT_EQ(f.path, p);
  EXPECT_EQ(f.Where(f.rows[0].line), p.string() + ":2");
  std::filesystem::remove(p);
  try {
    ReadCsv(p, "the observations CSV", "check --observations");
    ADD_FAILURE() << "a missing file was read";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              p.string() + ": cannot open the observations CSV; expected a readable CSV file. hint: check --observations");
  }
}

}  // namespace
}  // namespace lifeline
