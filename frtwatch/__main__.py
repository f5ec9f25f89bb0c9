from frtwatch.cli import app

app(prog_name="frtwatch")
