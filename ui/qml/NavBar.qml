// The left strip: your picture (opens the profile), the chats tab, the connection state and
// logging out.
import QtQuick 2.15
import QtQuick.Controls 2.15
import QtQuick.Layouts 1.15
import "."

Rectangle {
    id: root
    color: Theme.nav
    signal profileRequested()

    ColumnLayout {
        anchors.fill: parent
        anchors.topMargin: 18
        anchors.bottomMargin: 14
        spacing: 14

        Avatar {
            Layout.alignment: Qt.AlignHCenter
            size: 42
            source: bridge.avatarSource
            label: bridge.userName
            TapHandler { onTapped: root.profileRequested() }
            HoverHandler { cursorShape: Qt.PointingHandCursor }
            ToolTip.visible: hoverTip.hovered
            ToolTip.text: qsTr("%1 (%2) — edit profile").arg(bridge.userName).arg(bridge.userId)
            HoverHandler { id: hoverTip }
        }
        IconButton {
            Layout.alignment: Qt.AlignHCenter
            glyph: "💬"
            glyphSize: 22
            colour: Theme.ink
            tip: qsTr("Chats")
        }
        Item { Layout.fillHeight: true }
        ConnectionIndicator {
            Layout.alignment: Qt.AlignHCenter
            connection: bridge.connectionState
            showText: false
        }
        IconButton {
            Layout.alignment: Qt.AlignHCenter
            glyph: "⎋"
            tip: qsTr("Log out")
            onClicked: bridge.logout()
        }
    }
}
