import json

print(1)
