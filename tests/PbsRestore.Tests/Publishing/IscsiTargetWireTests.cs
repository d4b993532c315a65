using System.Buffers.Binary;
using PbsRestore.Publishing;
using PbsRestore.Publishing.Iscsi;

namespace PbsRestore.Tests.Publishing;

/// <summary>The target over real loopback sockets, driven PDU by PDU: negotiation on the wire, digests, Data-In
/// splitting, R2T, CmdSN window, and hostile input (never finished login, oversize segments, unknown opcodes).</summary>
public class IscsiTargetWireTests
{
    private const string Iqn = "iqn.2024-01.org.pbsrestore:wire";

    private static byte[] Pattern(int length)
    {
        var d = new byte[length];
        for (int i = 0; i < d.Length; i++) d[i] = (byte)(i * 7 + (i >> 9));
        return d;
    }

    private static Task<IscsiTarget> Start(IBlockDevice device, Func<IscsiTargetOptions, IscsiTargetOptions>? tweak = null)
    {
        var o = new IscsiTargetOptions { TargetName = Iqn, Luns = [new IscsiLun(0, "disk", device)] };
        return IscsiTarget.StartAsync(tweak is null ? o : tweak(o));
    }

    private static byte[] Read10(uint lba, ushort blocks)
    {
        var cdb = new byte[16];
        cdb[0] = 0x28;
        BinaryPrimitives.WriteUInt32BigEndian(cdb.AsSpan(2), lba);
        BinaryPrimitives.WriteUInt16BigEndian(cdb.AsSpan(7), blocks);
        return cdb;
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, true)]
    public async Task Reads_are_split_to_the_initiators_segment_length_with_status_in_the_last_data_in(bool headerDigest, bool dataDigest)
    {
        var contents = Pattern(1 << 20);
        await using var target = await Start(new MemoryBlockDevice(1 << 20, contents: contents));
        await using var c = await RawInitiator.ConnectAsync(target.LocalEndPoint);
        var login = await c.LoginAsync(Iqn, $"HeaderDigest={(headerDigest ? "CRC32C" : "None")}", $"DataDigest={(dataDigest ? "CRC32C" : "None")}",
            "MaxRecvDataSegmentLength=4096", "MaxBurstLength=16384");
        Assert.Equal(0, login.Class);
        Assert.Equal(headerDigest ? "CRC32C" : "None", login.Keys["HeaderDigest"]);

        await c.SendAsync(c.ScsiCommand(Read10(16, 64), 64 * 512, read: true, write: false));
        var received = new MemoryStream();
        uint expectedSn = 0;
        while (true)
        {
            using var p = await c.ReceiveAsync();
            Assert.NotNull(p);
            Assert.Equal(Opcode.DataIn, p!.Opcode);
            Assert.True(p.DataLength <= 4096);
            Assert.Equal(expectedSn++, p.U32(36));
            Assert.Equal((uint)received.Length, p.U32(40));
            received.Write(p.Data);
            if (received.Length % 16384 == 0) Assert.True(p.Final); // F closes each MaxBurstLength sequence
            if ((p.Flags & 0x01) != 0) { Assert.Equal(0, p.Bhs[3]); break; }
        }
        Assert.Equal(contents.AsSpan(16 * 512, 64 * 512).ToArray(), received.ToArray());
        Assert.Equal(64 * 512, target.Counters.BytesRead);
        var lun = Assert.Single(target.LunCounters);
        Assert.Equal((0, 1L, 64L * 512, 0L, 0L), (lun.Lun, lun.Commands, lun.BytesRead, lun.BytesWritten, lun.DeviceErrors));
    }

    [Fact]
    public async Task Writes_without_immediate_data_are_solicited_with_r2t_per_burst()
    {
        var device = new MemoryBlockDevice(1 << 20);
        await using var target = await Start(device);
        await using var c = await RawInitiator.ConnectAsync(target.LocalEndPoint);
        Assert.Equal(0, (await c.LoginAsync(Iqn, "InitialR2T=Yes", "ImmediateData=No", "MaxBurstLength=16384")).Class);
        var data = Pattern(40 * 1024);
        var cdb = new byte[16];
        cdb[0] = 0x2A;
        BinaryPrimitives.WriteUInt32BigEndian(cdb.AsSpan(2), 8);
        BinaryPrimitives.WriteUInt16BigEndian(cdb.AsSpan(7), (ushort)(data.Length / 512));
        var cmd = c.ScsiCommand(cdb, (uint)data.Length, read: false, write: true);
        uint itt = BinaryPrimitives.ReadUInt32BigEndian(cmd.AsSpan(16));
        await c.SendAsync(cmd);
        int r2ts = 0;
        while (true)
        {
            using var p = await c.ReceiveAsync();
            Assert.NotNull(p);
            if (p!.Opcode == Opcode.ScsiResponse) { Assert.Equal(0, p.Bhs[3]); break; }
            Assert.Equal(Opcode.ReadyToTransfer, p.Opcode);
            Assert.Equal((uint)r2ts++, p.U32(36));
            uint offset = p.U32(40), length = p.U32(44);
            Assert.True(length <= 16384);
            for (uint done = 0, sn = 0; done < length; done += 4096, sn++)
            {
                var d = new byte[48];
                d[0] = 0x05;
                d[1] = (byte)(done + 4096 >= length ? 0x80 : 0);
                PduWriter.Put32(d, 16, itt);
                PduWriter.Put32(d, 20, p.U32(20));
                PduWriter.Put32(d, 36, sn);
                PduWriter.Put32(d, 40, offset + done);
                await c.SendAsync(d, data.AsMemory((int)(offset + done), (int)Math.Min(4096, length - done)));
            }
        }
        Assert.Equal(3, r2ts); // 16 + 16 + 8 KiB
        Assert.Equal(data, device.Contents.Slice(8 * 512, data.Length).ToArray());
        Assert.Equal(data.Length, target.Counters.BytesWritten);
        Assert.Equal(data.Length, target.LunCounters[0].BytesWritten);
    }

    [Fact]
    public async Task A_login_that_never_finishes_is_dropped_after_the_login_timeout()
    {
        await using var target = await Start(new MemoryBlockDevice(1 << 20), o => o with { LoginTimeout = TimeSpan.FromSeconds(1) });
        await using var c = await RawInitiator.ConnectAsync(target.LocalEndPoint);
        await c.Stream.WriteAsync(new byte[20]); // half a header, then silence
        Assert.True(await c.ClosedByPeerAsync(TimeSpan.FromSeconds(20)));
        Assert.Equal(1, target.Counters.LoginFailures);
    }

    [Fact]
    public async Task A_segment_beyond_MaxRecvDataSegmentLength_drops_the_connection_and_the_target_keeps_serving()
    {
        await using var target = await Start(new MemoryBlockDevice(1 << 20));
        await using (var c = await RawInitiator.ConnectAsync(target.LocalEndPoint))
        {
            Assert.Equal(0, (await c.LoginAsync(Iqn)).Class);
            var bhs = c.ScsiCommand(new byte[16], 0, false, false);
            bhs[5] = 0xFF; bhs[6] = 0xFF; bhs[7] = 0xFF; // announces 16 MiB of data
            await c.Stream.WriteAsync(bhs);
            Assert.True(await c.ClosedByPeerAsync(TimeSpan.FromSeconds(20)));
        }
        Assert.True(target.Counters.ProtocolErrors >= 1);
        await using var again = await RawInitiator.ConnectAsync(target.LocalEndPoint);
        Assert.Equal(0, (await again.LoginAsync(Iqn)).Class);
    }

    [Fact]
    public async Task Unknown_opcodes_get_a_reject_carrying_their_header()
    {
        await using var target = await Start(new MemoryBlockDevice(1 << 20));
        await using var c = await RawInitiator.ConnectAsync(target.LocalEndPoint);
        Assert.Equal(0, (await c.LoginAsync(Iqn)).Class);
        var bhs = new byte[48];
        bhs[0] = 0x1C; // vendor-specific
        bhs[1] = 0x80;
        PduWriter.Put32(bhs, 16, 0xABCDEF01);
        await c.SendAsync(bhs);
        using var r = await c.ReceiveAsync();
        Assert.Equal(Opcode.Reject, r!.Opcode);
        Assert.Equal((byte)RejectReason.CommandNotSupported, r.Bhs[2]);
        Assert.Equal(48, r.DataLength);
        Assert.Equal(0xABCDEF01u, BinaryPrimitives.ReadUInt32BigEndian(r.Data[16..]));
    }

    [Fact]
    public async Task Commands_outside_the_cmdsn_window_are_ignored_and_out_of_range_lbas_get_sense()
    {
        await using var target = await Start(new MemoryBlockDevice(1 << 20));
        await using var c = await RawInitiator.ConnectAsync(target.LocalEndPoint);
        Assert.Equal(0, (await c.LoginAsync(Iqn)).Class);
        var tooFar = c.ScsiCommand(Read10(0, 1), 512, true, false);
        PduWriter.Put32(tooFar, 24, c.CmdSn + 1000);
        await c.SendAsync(tooFar);
        var beyond = c.ScsiCommand(Read10(4096, 1), 512, true, false); // the disk has 2048 blocks
        uint itt = BinaryPrimitives.ReadUInt32BigEndian(beyond.AsSpan(16));
        PduWriter.Put32(beyond, 24, c.CmdSn - 2); // the CmdSN the ignored command should have used
        await c.SendAsync(beyond);
        using var r = await c.ReceiveAsync();
        Assert.Equal(Opcode.ScsiResponse, r!.Opcode);
        Assert.Equal(itt, r.InitiatorTaskTag);
        Assert.Equal(0x02, r.Bhs[3]); // CHECK CONDITION
        var sense = r.Data[2..];
        Assert.Equal((0x05, 0x21), (sense[2] & 0x0F, sense[12])); // ILLEGAL REQUEST, LBA OUT OF RANGE
    }

    [Fact]
    public async Task Sessions_beyond_MaxSessions_are_refused_and_discovery_lists_the_portal()
    {
        await using var target = await Start(new MemoryBlockDevice(1 << 20), o => o with { MaxSessions = 1 });
        await using var first = await RawInitiator.ConnectAsync(target.LocalEndPoint);
        Assert.Equal(0, (await first.LoginAsync(Iqn)).Class);
        await using var second = await RawInitiator.ConnectAsync(target.LocalEndPoint);
        var refused = await second.LoginAsync("");
        Assert.Equal((3, 2), (refused.Class, refused.Detail)); // out of resources
        Assert.Equal(1, target.Counters.ActiveSessions);
    }

    [Fact]
    public async Task A_second_connection_joins_the_session_and_shares_its_cmdsn_window()
    {
        var contents = Pattern(1 << 20);
        await using var target = await Start(new MemoryBlockDevice(1 << 20, contents: contents));
        await using var a = await RawInitiator.ConnectAsync(target.LocalEndPoint);
        Assert.Equal(0, (await a.LoginAsync(Iqn, "MaxConnections=2")).Class);
        Assert.NotEqual(0, a.Tsih);
        await using var b = await RawInitiator.ConnectAsync(target.LocalEndPoint);
        b.Tsih = a.Tsih;
        b.Cid = 1;
        b.CmdSn = a.CmdSn;
        Assert.Equal(0, (await b.LoginAsync(Iqn)).Class);
        Assert.Equal(1, target.Counters.ActiveSessions);
        Assert.Equal(2, target.Counters.ActiveConnections);

        // CmdSN n goes on connection b, n+1 on a: both complete, and the window moved past both.
        b.CmdSn = a.CmdSn;
        await b.SendAsync(b.ScsiCommand(Read10(0, 1), 512, true, false));
        a.CmdSn = b.CmdSn;
        await a.SendAsync(a.ScsiCommand(Read10(1, 1), 512, true, false));
        using var rb = await b.ReceiveAsync();
        using var ra = await a.ReceiveAsync();
        Assert.Equal(contents.AsSpan(0, 512).ToArray(), rb!.Data.ToArray());
        Assert.Equal(contents.AsSpan(512, 512).ToArray(), ra!.Data.ToArray());
        // ExpCmdSN: the two connections race, so either command may be taken first; the one taken last closes the
        // gap, and its response carries the window moved past both.
        Assert.Equal(a.CmdSn, Math.Max(ra.U32(28), rb.U32(28)));

        // A third connection is over MaxConnections=2.
        await using var c = await RawInitiator.ConnectAsync(target.LocalEndPoint);
        c.Tsih = a.Tsih;
        c.Cid = 2;
        var refused = await c.LoginAsync(Iqn);
        Assert.Equal((2, 6), (refused.Class, refused.Detail)); // too many connections
    }

    [Fact]
    public async Task An_idle_connection_gets_a_nop_in_ping_and_is_dropped_when_it_never_answers()
    {
        await using var target = await Start(new MemoryBlockDevice(1 << 20), o => o with { IdleTimeout = TimeSpan.FromMilliseconds(600) });
        await using var c = await RawInitiator.ConnectAsync(target.LocalEndPoint);
        Assert.Equal(0, (await c.LoginAsync(Iqn)).Class);
        using var ping = await c.ReceiveAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(Opcode.NopIn, ping!.Opcode);
        Assert.Equal(Pdu.ReservedTag, ping.InitiatorTaskTag);
        Assert.NotEqual(Pdu.ReservedTag, ping.U32(20)); // a target transfer tag the initiator must echo
        Assert.True(await c.ClosedByPeerAsync(TimeSpan.FromSeconds(20)));
    }

    [Fact]
    public async Task Logout_closes_the_session()
    {
        await using var target = await Start(new MemoryBlockDevice(1 << 20));
        await using var c = await RawInitiator.ConnectAsync(target.LocalEndPoint);
        Assert.Equal(0, (await c.LoginAsync(Iqn)).Class);
        var bhs = new byte[48];
        bhs[0] = 0x46; bhs[1] = 0x80; // immediate Logout, close the session
        PduWriter.Put32(bhs, 16, 77);
        PduWriter.Put32(bhs, 24, c.CmdSn);
        await c.SendAsync(bhs);
        using var r = await c.ReceiveAsync();
        Assert.Equal(Opcode.LogoutResponse, r!.Opcode);
        Assert.Equal(0, r.Bhs[2]);
        Assert.Equal(77u, r.InitiatorTaskTag);
        Assert.True(await c.ClosedByPeerAsync(TimeSpan.FromSeconds(10)));
        for (int i = 0; i < 100 && target.Counters.ActiveSessions > 0; i++) await Task.Delay(20);
        Assert.Equal(0, target.Counters.ActiveSessions);
    }

    /// <summary>A disk whose blocks from 1024 on fail verification (as an archive chunk with a bad digest would).</summary>
    private sealed class HalfBadDevice : IBlockDevice
    {
        private readonly MemoryBlockDevice _inner = new(1 << 20);
        public long Length => _inner.Length;
        public int BlockSize => 512;
        public bool ReadOnly => false;
        public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct) =>
            offset + buffer.Length > 1024 * 512 ? throw new BlockDeviceException(BlockDeviceError.Medium, "chunk 4f2e failed its digest") : _inner.ReadAsync(offset, buffer, ct);
        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken ct) => _inner.WriteAsync(offset, data, ct);
        public ValueTask FlushAsync(CancellationToken ct) => ValueTask.CompletedTask;
        public ValueTask UnmapAsync(long offset, long length, CancellationToken ct) => ValueTask.CompletedTask;
    }

    [Fact]
    public async Task A_read_the_device_cannot_verify_ends_in_medium_error_not_in_bytes()
    {
        var diagnostics = new List<string>();
        await using var target = await Start(new HalfBadDevice(), o => o with { Log = d => { lock (diagnostics) diagnostics.Add(d.Message); } });
        await using var c = await RawInitiator.ConnectAsync(target.LocalEndPoint);
        Assert.Equal(0, (await c.LoginAsync(Iqn)).Class);
        await c.SendAsync(c.ScsiCommand(Read10(1020, 8), 8 * 512, true, false));
        using var r = await c.ReceiveAsync();
        Assert.Equal(Opcode.ScsiResponse, r!.Opcode); // no Data-In at all: nothing unverified goes out
        Assert.Equal(0x02, r.Bhs[3]);
        var sense = r.Data[2..];
        Assert.Equal((0x03, 0x11), (sense[2] & 0x0F, sense[12])); // MEDIUM ERROR, UNRECOVERED READ ERROR
        Assert.Equal(1, target.LunCounters[0].DeviceErrors);
        lock (diagnostics) Assert.Contains(diagnostics, m => m.Contains("chunk 4f2e failed its digest"));
        // The connection stays usable.
        await c.SendAsync(c.ScsiCommand(Read10(0, 1), 512, true, false));
        using var ok = await c.ReceiveAsync();
        Assert.Equal(Opcode.DataIn, ok!.Opcode);
    }

    [Fact]
    public async Task Writes_whose_data_never_comes_are_bounded_by_task_set_full()
    {
        await using var target = await Start(new MemoryBlockDevice(1 << 20), o => o with { CommandWindow = 4 });
        await using var c = await RawInitiator.ConnectAsync(target.LocalEndPoint);
        Assert.Equal(0, (await c.LoginAsync(Iqn, "InitialR2T=Yes", "ImmediateData=No")).Class);
        var cdb = new byte[16];
        cdb[0] = 0x2A; cdb[8] = 1;
        for (int i = 0; i < 5; i++) await c.SendAsync(c.ScsiCommand(cdb, 512, false, true));
        int r2t = 0, full = 0;
        for (int i = 0; i < 5; i++)
        {
            using var p = await c.ReceiveAsync();
            if (p!.Opcode == Opcode.ReadyToTransfer) r2t++;
            else if (p.Opcode == Opcode.ScsiResponse && p.Bhs[3] == 0x28) full++;
        }
        Assert.Equal((4, 1), (r2t, full)); // four wait for data, the fifth is TASK SET FULL
    }

    [Fact]
    public async Task Connections_beyond_what_sessions_can_use_are_closed_at_once()
    {
        await using var target = await Start(new MemoryBlockDevice(1 << 20), o => o with { MaxSessions = 1, MaxConnectionsPerSession = 1 });
        var open = new List<RawInitiator>();
        try
        {
            for (int i = 0; i < 17; i++) open.Add(await RawInitiator.ConnectAsync(target.LocalEndPoint)); // cap = 1 × 1 + 16
            for (int i = 0; i < 200 && target.Counters.ActiveConnections < 17; i++) await Task.Delay(10);
            await using var extra = await RawInitiator.ConnectAsync(target.LocalEndPoint);
            Assert.True(await extra.ClosedByPeerAsync(TimeSpan.FromSeconds(10)));
            Assert.Equal(17, target.Counters.ActiveConnections);
        }
        finally
        {
            foreach (var c in open) await c.DisposeAsync();
        }
    }

    /// <summary>A memory disk whose reads of its first block wait until released (a chunk still being fetched).</summary>
    private sealed class HeldFirstBlockDevice(byte[] contents) : IBlockDevice
    {
        private readonly MemoryBlockDevice _inner = new(contents.Length, contents: contents);
        public readonly TaskCompletionSource Release = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public readonly TaskCompletionSource Held = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public long Length => _inner.Length;
        public int BlockSize => 512;
        public bool ReadOnly => true;

        public async ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct)
        {
            if (offset == 0)
            {
                Held.TrySetResult();
                await Release.Task.WaitAsync(TimeSpan.FromSeconds(30), ct);
            }
            await _inner.ReadAsync(offset, buffer, ct);
        }

        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken ct) => throw new BlockDeviceException(BlockDeviceError.WriteProtected, "read-only");
        public ValueTask FlushAsync(CancellationToken ct) => ValueTask.CompletedTask;
        public ValueTask UnmapAsync(long offset, long length, CancellationToken ct) => throw new BlockDeviceException(BlockDeviceError.WriteProtected, "read-only");
    }

    [Fact]
    public async Task Reads_in_flight_on_one_connection_are_served_concurrently_and_each_arrives_bit_exact()
    {
        var contents = Pattern(4 << 20);
        var device = new HeldFirstBlockDevice(contents);
        await using var target = await Start(device);
        await using var c = await RawInitiator.ConnectAsync(target.LocalEndPoint);
        Assert.Equal(0, (await c.LoginAsync(Iqn, "MaxRecvDataSegmentLength=65536", "MaxBurstLength=262144")).Class);

        // First a READ whose data is not there yet (LBA 0 is held), then eight more of assorted sizes and places,
        // sent back to back: they must all complete while the first still waits (no head-of-line blocking).
        uint held = c.Itt;
        await c.SendAsync(c.ScsiCommand(Read10(0, 128), 128 * 512, read: true, write: false));
        await device.Held.Task.WaitAsync(TimeSpan.FromSeconds(30));
        var expected = new Dictionary<uint, (long Offset, int Length)> { [held] = (0, 128 * 512) };
        var rng = new Random(15);
        for (int i = 0; i < 8; i++)
        {
            uint lba = (uint)rng.Next(1, (4 << 20) / 512 - 2048);
            ushort blocks = (ushort)rng.Next(1, 2048); // up to 1 MiB: several Data-In PDUs and bursts
            expected[c.Itt] = (lba * 512L, blocks * 512);
            await c.SendAsync(c.ScsiCommand(Read10(lba, blocks), blocks * 512u, read: true, write: false));
        }

        var received = expected.Keys.ToDictionary(k => k, _ => new MemoryStream());
        var nextSn = expected.Keys.ToDictionary(k => k, _ => 0u);
        var finished = new List<uint>();
        while (finished.Count < expected.Count)
        {
            if (finished.Count == expected.Count - 1) device.Release.TrySetResult();
            using var p = await c.ReceiveAsync(TimeSpan.FromSeconds(30));
            Assert.NotNull(p);
            Assert.Equal(Opcode.DataIn, p!.Opcode);
            uint itt = p.InitiatorTaskTag;
            Assert.DoesNotContain(itt, finished);
            Assert.Equal(nextSn[itt]++, p.U32(36));              // DataSN in order per task
            Assert.Equal((uint)received[itt].Length, p.U32(40)); // buffer offset in order per task
            received[itt].Write(p.Data);
            if ((p.Flags & 0x01) != 0)
            {
                Assert.Equal(0, p.Bhs[3]); // GOOD
                finished.Add(itt);
            }
        }
        Assert.Equal(held, finished[^1]); // the held READ finished last, after all the others
        foreach (var (itt, (offset, length)) in expected)
            Assert.True(contents.AsSpan((int)offset, length).SequenceEqual(received[itt].ToArray()), $"task 0x{itt:x} differs");
        Assert.Equal(expected.Values.Sum(e => (long)e.Length), target.Counters.BytesRead);
    }
}
