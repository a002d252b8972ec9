#!/bin/sh
echo "sim-selftest: not written yet"; exit 1
