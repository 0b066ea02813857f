from gridcall.cli import app

app(prog_name="gridcall")
