#include "tools/opensmtpd/queue_tool.h"

int main(int argc, char** argv) { return spool::opensmtpd::QueueMain(argc, argv); }
