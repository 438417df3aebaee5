#include "spool/status.h"

#include <gtest/gtest.h>

#include <string>

#include "test_util.h"

namespace spool {
namespace {

TEST(StatusTest, DefaultIsOk) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.code(), Code::kOk);
  EXPECT_EQ(s.message(), "");
  EXPECT_EQ(s.ToString(), "ok");
}

TEST(StatusTest, CarriesCodeMessageAndErrno) {
  Status s = StorageFullError("write /x: No space left on device (ENOSPC)", 28);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kStorageFull);
  EXPECT_EQ(s.sys_errno(), 28);
  EXPECT_EQ(s.ToString(), "storage_full: write /x: No space left on device (ENOSPC)");
}

TEST(StatusTest, OkCodeIgnoresMessage) {
  Status s(Code::kOk, "ignored");
  EXPECT_TRUE(s.ok());
}

TEST(StatusTest, WithContextPrefixesAndKeepsCode) {
  Status s = IoError("boom", 5).WithContext("shard 2");
  EXPECT_EQ(s.code(), Code::kIoError);
  EXPECT_EQ(s.message(), "shard 2: boom");
  EXPECT_EQ(s.sys_errno(), 5);
  EXPECT_TRUE(Status().WithContext("x").ok());
}

TEST(StatusTest, EveryCodeHasADistinctName) {
  std::set<std::string_view> names;
  for (int c = 0; c <= static_cast<int>(Code::kInternal); ++c) {
    names.insert(CodeName(static_cast<Code>(c)));
  }
  EXPECT_EQ(names.size(), static_cast<size_t>(Code::kInternal) + 1);
  EXPECT_EQ(names.count("unknown"), 0u);
}

StatusOr<int> Half(int x) {
  if (x % 2 != 0) return InvalidArgumentError("odd");
  return x / 2;
}

StatusOr<int> Quarter(int x) {
  SPOOL_ASSIGN_OR_RETURN(int h, Half(x));
  return Half(h);
}

Status CheckEven(int x) {
  SPOOL_RETURN_IF_ERROR(Half(x).status());
  return Status::Ok();
}

TEST(StatusOrTest, ValueAndErrorPropagate) {
  StatusOr<int> q = Quarter(8);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(*q, 2);
  StatusOr<int> bad = Quarter(6);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  EXPECT_OK(CheckEven(4));
  EXPECT_EQ(CheckEven(3).code(), Code::kInvalidArgument);
}

TEST(StatusOrTest, OkStatusBecomesInternalError) {
  StatusOr<int> s{Status::Ok()};
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), Code::kInternal);
}

TEST(StatusOrTest, MoveOnlyValue) {
  StatusOr<std::unique_ptr<int>> p = std::make_unique<int>(7);
  ASSERT_TRUE(p.ok());
  std::unique_ptr<int> v = std::move(p).value();
  EXPECT_EQ(*v, 7);
}

}  // namespace
}  // namespace spool
