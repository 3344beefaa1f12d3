"""An asyncio echo server and a client in one process, over loopback: 300 round trips of
1000 bytes (sweep driver: prints 300000)."""
import asyncio


async def echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def main():
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = 0
    for _ in range(300):
        writer.write(b"x" * 1000)
        await writer.drain()
        n += len(await reader.readexactly(1000))
    writer.close()
    server.close()
    print(n)


asyncio.run(main())
