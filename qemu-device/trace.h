#include "trace/trace-hw_net_e810.h"
