import sys
import os

print(os.name, len(sys.argv))
