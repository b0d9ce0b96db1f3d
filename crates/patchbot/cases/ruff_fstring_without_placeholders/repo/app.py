print(f"hello")
