#include "tools/smtpd/smtpd.h"

int main(int argc, char** argv) { return spool::smtpd::SmtpdMain(argc, argv); }
