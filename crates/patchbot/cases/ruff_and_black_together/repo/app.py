import os
x = {  'a':1}
print(x)
