from codecdoctor.cli import console

# guarded: a worker process started by spawn imports this module as __mp_main__
if __name__ == "__main__":
    console()
